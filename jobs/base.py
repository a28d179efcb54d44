"""The one interface every kind of job implements: :class:`JobKind`.

Every kind (SQL aggregate, PSI match, HE aggregate, verification) names the datasets
a request reads (:meth:`JobKind.referenced_datasets`, for the grants gate) and turns
the request into a plan after checking it against policy (:meth:`JobKind.plan`,
which raises :class:`~policies.errors.PolicyRefusal` naming the rule and article).
The platform builds the scope (the datasets' classifications and granted columns)
and hands it in; a kind never reads the store, a file or a process.

What happens after the plan differs by kind, and the interface says so:
:class:`SqlKind` (SQL aggregates) runs its plan through an :class:`Executor` that
the platform provides (an isolated worker) and judges the raw result with the output
check (:meth:`SqlKind.check`); only the released table of that check may leave the
platform. A PSI match and an HE sum run as sessions of their own
(``sandbox.psi``, ``sandbox.he``), and a verification rule becomes a keyed index
(``sandbox.verification``): their plans are what those sessions execute.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import pyarrow as pa

from policies.admission import QueryScope, TableScope
from policies.classes import Classification
from policies.disclosure import CheckResult, DisclosureParams
from policies.errors import InputError
from policies.suggest import did_you_mean


class Executor(Protocol):
    """Runs one SQL statement over the given snapshots in isolation; returns its result."""

    def __call__(self, sql: str, tables: Mapping[str, Path]) -> pa.Table: ...


@dataclass(frozen=True)
class JobPlan:
    """What will run: the checked request, ready for the executor."""

    kind: str
    tables: tuple[str, ...]  # datasets read, in the order the request names them
    engine_sql: str  # the rewritten statement the worker runs (never shown to consumers)
    details: Mapping[str, Any] = field(default_factory=dict)  # safe to show the operator
    payload: Any = None  # kind-specific, stays inside the platform
    grid: Any = None  # the declared grid the output is completed to (jobs.grid), if any


PlanT = TypeVar("PlanT")


class JobKind(abc.ABC, Generic[PlanT]):
    """A kind of job: its name (the grants and agreements name it), the article its
    requests are admitted under, and its admission."""

    name: ClassVar[str]
    article: ClassVar[str]
    command: ClassVar[str]  # the command line that submits a request of this kind

    @abc.abstractmethod
    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        """Dataset names the request mentions (a hint for building its scope); a request
        of the wrong shape is an InputError naming the field."""

    @abc.abstractmethod
    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> PlanT:
        """Check the request against policy; refuse or return the plan."""


class SqlKind(JobKind[JobPlan]):
    """A kind whose plan is one SQL statement run in an isolated worker, and whose raw
    result is judged by the output check before anything is released."""

    def run(self, plan: JobPlan, execute: Executor, snapshots: Mapping[str, Path]) -> pa.Table:
        return execute(plan.engine_sql, {t: snapshots[t] for t in plan.tables})

    @abc.abstractmethod
    def check(self, plan: JobPlan, raw: pa.Table, params: DisclosureParams) -> CheckResult:
        """The output check of the raw result (which never leaves the platform)."""


def one_table_scope(dataset: str, classification: Classification) -> QueryScope:
    """The scope of a kind that reads one dataset (a PSI column, an HE join)."""
    return QueryScope(tables={dataset: TableScope(dataset, classification)})


def table_of(scope: QueryScope, dataset: str) -> Classification:
    """The classification of one dataset of the scope, or an InputError naming it."""
    if dataset not in scope.tables:
        raise InputError(f"no dataset '{dataset}' in scope; " + did_you_mean(dataset, scope.tables))
    return scope.tables[dataset].classification
