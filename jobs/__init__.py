"""Job kinds, one module each, all behind :class:`jobs.base.JobKind`.

``jobs`` imports ``policies`` only; the platform (``sandbox``) hands each job
kind what it needs (its scope, and for SQL kinds an executor that runs SQL in an
isolated worker) through the interface in :mod:`jobs.base`. :data:`KINDS` is the
registry of every kind a grant, an agreement or a job row may name:
``sql_aggregate``, ``psi_match``, ``he_aggregate``, ``verification`` and
``model_train``;
:func:`get_kind` finds one, :func:`sql_kind` one that runs as a SQL job.
"""

from typing import Any

from policies.errors import InputError
from policies.suggest import did_you_mean

from .base import JobKind, JobPlan, SqlKind
from .he_aggregate import HeAggregate
from .model import ModelTrain
from .psi_match import PsiMatch
from .sql_aggregate import SqlAggregate
from .verification import Verification

KINDS: dict[str, JobKind[Any]] = {
    kind.name: kind
    for kind in (SqlAggregate(), PsiMatch(), HeAggregate(), Verification(), ModelTrain())
}


def get_kind(name: str) -> JobKind[Any]:
    """The job kind of this name, or an InputError that names the known ones."""
    if name not in KINDS:
        raise InputError(f"unknown job kind '{name}'; " + did_you_mean(name, KINDS))
    return KINDS[name]


def is_sql_kind(name: str) -> bool:
    """Whether jobs of this name run as SQL jobs (:class:`sandbox.run.execution.JobService`)."""
    return isinstance(KINDS.get(name), SqlKind)


def sql_kind(name: str) -> SqlKind:
    """The kind of this name if it runs as a SQL job; the others run as sessions of
    their own, and the error says where."""
    kind = get_kind(name)
    if not isinstance(kind, SqlKind):
        raise InputError(
            f"a {name} job is not submitted as a SQL job; use its own command ({kind.command})"
        )
    return kind


__all__ = ["KINDS", "JobKind", "JobPlan", "SqlKind", "get_kind", "sql_kind"]
