"""Job kinds, one module each, all behind :class:`jobs.base.JobKind`.

``jobs`` imports ``policies`` only; the platform (``sandbox``) hands each job
kind what it needs (its scope, and an executor that runs SQL in an isolated
worker) through the interface in :mod:`jobs.base`.
"""

from .base import JobKind, JobPlan, get_kind

__all__ = ["JobKind", "JobPlan", "get_kind"]
