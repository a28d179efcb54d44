"""The workflow's registers, which the layers below the workflow read.

The workflow (:mod:`sandbox.workflow`) moves notices, applications, agreements and
requests through their states; the data, guard and run layers only consult what it
decided: an agreement's terms (:mod:`.terms`), the county a principal may act in
(:mod:`.jurisdiction`), what a disposal clause deleted (:mod:`.disposal`), and the
inbox they write to (:mod:`.inbox`). Those live here, with the workflow's tables
(:mod:`.tables`) and the helpers of every step (:mod:`.base`), so that each package
imports only the ones below it (tests/test_architecture.py).

This package's ``__init__`` imports nothing, so that :mod:`sandbox.core.store` can
import :mod:`.tables` while it is itself being loaded.
"""
