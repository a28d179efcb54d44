"""Job kinds, one module each, all behind :class:`jobs.base.JobKind`.

``jobs`` imports ``policies`` only; the platform (``sandbox``) hands each job
kind what it needs (its scope, and an executor that runs SQL in an isolated
worker) through the interface in :mod:`jobs.base`. :func:`get_kind` is the
registry of the kinds a job row may name.
"""

from policies.classes import did_you_mean
from policies.errors import InputError

from .base import JobKind, JobPlan
from .sql_aggregate import SqlAggregate

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (SqlAggregate(),)}


def get_kind(name: str) -> JobKind:
    """The job kind of this name, or an InputError that names the known ones."""
    if name not in KINDS:
        raise InputError(f"unknown job kind '{name}'; " + did_you_mean(name, KINDS))
    return KINDS[name]


__all__ = ["KINDS", "JobKind", "JobPlan", "get_kind"]
