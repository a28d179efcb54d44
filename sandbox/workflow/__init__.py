"""The regulation's operation flow (Art. 9 to 16) and supervision (Art. 20 to 24).

One small module per object: :mod:`.notices`, :mod:`.applications`,
:mod:`.reviews`, :mod:`.agreements`, :mod:`.requests` (data requests, grants,
quality tickets), :mod:`.supervision` (evaluation, incident, inspection),
:mod:`.feedback`, :mod:`.usage` and :mod:`.airlock` (output review). Their
states and rules are pure data in :mod:`policies.workflow`; every move here is
one ledger entry in the same transaction as the state change
(:mod:`sandbox.registry.base`). The workflow's tables, and what the layers below it
read of its decisions (terms, counties, disposals, the inbox), are in
:mod:`sandbox.registry`.
"""
