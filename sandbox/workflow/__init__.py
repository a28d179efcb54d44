"""The regulation's operation flow (Art. 9 to 16) and supervision (Art. 20 to 24).

One small module per object: :mod:`.notices`, :mod:`.applications`,
:mod:`.reviews`, :mod:`.agreements`, :mod:`.requests` (data requests, grants,
quality tickets), :mod:`.supervision` (evaluation, incident, inspection),
:mod:`.feedback`, :mod:`.usage` and :mod:`.airlock` (output review). Their
states and rules are pure data in :mod:`policies.workflow`; every move here is
one ledger entry in the same transaction as the state change (:mod:`.base`).

This package's ``__init__`` imports nothing, so that :mod:`sandbox.core.store` can
import :mod:`.tables` while it is itself being loaded.
"""
