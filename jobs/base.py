"""The one interface every kind of job implements.

A job kind turns an operator's request into a :class:`JobPlan` after checking
it against policy (:meth:`JobKind.plan`, which raises
:class:`~policies.errors.PolicyRefusal` naming the rule and article), runs the
plan through an :class:`Executor` that the platform provides (an isolated
worker; the job kind never sees a process or a file), and judges the raw
result with the output check (:meth:`JobKind.check`). Only the released table
of that check may leave the platform.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from policies.admission import QueryScope
from policies.disclosure import CheckResult, DisclosureParams


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


class JobKind(abc.ABC):
    name: str

    @abc.abstractmethod
    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        """Dataset names the request mentions (a hint for building its scope)."""

    @abc.abstractmethod
    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> JobPlan:
        """Check the request against policy; refuse or return the plan."""

    def run(self, plan: JobPlan, execute: Executor, snapshots: Mapping[str, Path]) -> pa.Table:
        return execute(plan.engine_sql, {t: snapshots[t] for t in plan.tables})

    @abc.abstractmethod
    def check(self, plan: JobPlan, raw: pa.Table, params: DisclosureParams) -> CheckResult:
        """The output check of the raw result (which never leaves the platform)."""
