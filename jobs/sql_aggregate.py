"""SQL aggregate jobs: admission, evidence rewrite, output check.

The request is ``{"sql": "..."}``. :meth:`SqlAggregate.plan` admits the query
against the operator's scope (``policies.admission``) and rewrites it so each
output cell also computes its evidence (``jobs.sql_evidence``); the worker runs
the rewritten statement; :meth:`SqlAggregate.check` applies the disclosure
rules (``policies.disclosure``), which drop every evidence column.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from policies.admission import DIALECT, AdmittedQuery, QueryScope, admit, check_nesting
from policies.disclosure import CheckResult, DisclosureParams, check_output
from policies.disclosure.lineage import Lineage
from policies.errors import InputError, PolicyRefusal

from .base import Executor, JobPlan, SqlKind
from .grid import complete_grid, declared_grid
from .sql_evidence import with_evidence

MAX_SQL_BYTES = 64 * 1024


class SqlAggregate(SqlKind):
    name = "sql_aggregate"
    article = "Art. 15"
    command = "sandbox job submit"

    @staticmethod
    def _sql(request: Mapping[str, Any]) -> str:
        sql = request.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise InputError("the job needs 'sql': one SELECT statement")
        if len(sql.encode()) > MAX_SQL_BYTES:
            raise InputError(f"the SQL is longer than {MAX_SQL_BYTES} bytes")
        return sql

    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        sql = self._sql(request)
        try:
            # Too deep a query would exhaust the parser's stack: admission refuses it
            # (rule nesting) once the job is recorded.
            check_nesting(sql)
            trees = sqlglot.parse(sql, dialect=DIALECT)
        except (SqlglotError, PolicyRefusal, RecursionError):
            return []
        names: list[str] = []
        for tree in trees:
            if tree is None:
                continue
            for table in tree.find_all(exp.Table):
                if isinstance(table.this, exp.Identifier) and table.name not in names:
                    names.append(table.name)
        return names

    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> JobPlan:
        admitted: AdmittedQuery = admit(self._sql(request), scope)
        return JobPlan(
            kind=self.name,
            tables=admitted.tables,
            engine_sql=with_evidence(admitted, scope),
            details={"sql": admitted.sql, "outputs": [c.name for c in admitted.spec.columns]},
            payload=admitted,
            grid=declared_grid(admitted, scope),
        )

    def run(self, plan: JobPlan, execute: Executor, snapshots: Mapping[str, Path]) -> pa.Table:
        """The run's rows, with every declared combination the data lacks as an empty
        row (:mod:`jobs.grid`): the rows released never depend on the data."""
        raw = super().run(plan, execute, snapshots)
        if plan.grid is None:
            return raw
        return complete_grid(raw, plan.payload, plan.grid)

    def check(
        self,
        plan: JobPlan,
        raw: pa.Table,
        params: DisclosureParams,
        lineage: Lineage | None = None,
    ) -> CheckResult:
        """The output check; with a declared grid, the table's secondary suppression is
        chosen on the declared hypercube and must pass the interval audit (issue 17,
        item 3; ``policies.disclosure.tables``), with ``lineage`` (the earlier releases
        of the output's lineage, measures and WHERE, ``sandbox.guard.lineage_audit``)
        on the hypercube over their dimensions too."""
        grid = None if plan.grid is None else plan.grid.values
        return check_output(raw, plan.payload.spec, params, grid=grid, lineage=lineage)
