"""The path of a job: submit, policy check, isolated run, output check, release.

Job states (DESIGN.md) and the only allowed transitions::

    submitted -> refused | queued
    queued    -> running | failed
    running   -> checking | failed
    checking  -> released | withheld | failed

Each transition is one ledger entry written in the same transaction as the
state change, naming the operator responsible for the job (Art. 18). A refusal
names the rule, the subject and the article; a failure names the limit; a
withheld output says which rules fired, never the hidden values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs import get_kind
from jobs.base import JobKind, JobPlan
from policies.access import Grant
from policies.admission import QueryScope, TableScope
from policies.disclosure import CheckResult, DisclosureParams, OutputVerdict
from policies.errors import (
    Conflict,
    JobFailed,
    NotFound,
    PermissionDenied,
    PolicyRefusal,
    SandboxError,
)

from .grants import grants_of, may_run
from .ledger import now_utc
from .platform import Platform
from .principals import Principal, Role
from .release import write_product
from .runner import Limits, Runner
from .store import datasets, jobs
from .vault import DatasetVersion, get_version


class JobState(StrEnum):
    SUBMITTED = "submitted"
    REFUSED = "refused"
    QUEUED = "queued"
    RUNNING = "running"
    CHECKING = "checking"
    RELEASED = "released"
    WITHHELD = "withheld"
    FAILED = "failed"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.REFUSED, JobState.QUEUED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.CHECKING, JobState.FAILED}),
    JobState.CHECKING: frozenset({JobState.RELEASED, JobState.WITHHELD, JobState.FAILED}),
}

ARTICLE_OF = {
    JobState.REFUSED: "Art. 15",
    JobState.RELEASED: "Art. 15",
    JobState.WITHHELD: "Art. 15",
}


def may_transition(old: JobState, new: JobState) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def _transition(
    platform: Platform,
    conn: Connection,
    job_id: int,
    operator: Principal,
    new: JobState,
    details: Mapping[str, Any] | None = None,
    article: str | None = None,
    **columns: Any,
) -> None:
    row = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).first()
    old = JobState(row.status)
    if not may_transition(old, new):
        raise Conflict(f"job {job_id} cannot go from {old.value} to {new.value}")
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id)
        .values(status=new.value, updated_at=now_utc(), **columns)
    )
    platform.record(
        conn,
        operator.actor,
        f"job.{new.value}",
        f"job:{job_id}",
        {"from": old.value, **(details or {})},
        article or ARTICLE_OF.get(new, "Art. 7"),
    )


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    state: JobState
    reason: dict | None = None
    report: dict | None = None
    product_id: str | None = None


def _limits(platform: Platform) -> Limits:
    s = platform.settings
    return Limits(
        time_s=s["job.time_limit_s"],
        memory_mb=s["job.memory_limit_mb"],
        max_rows=s["job.max_output_rows"],
        threads=s["job.threads"],
    )


def platform_minimums(platform: Platform) -> DisclosureParams:
    s = platform.settings
    return DisclosureParams(
        min_entities=s["disclosure.min_entities"],
        dominance_n=s["disclosure.dominance_n"],
        dominance_k=s["disclosure.dominance_k"],
        p_ratio=s["disclosure.p_ratio"],
    )


def _scope(
    conn: Connection,
    platform: Platform,
    operator: Principal,
    kind: JobKind,
    request: Mapping[str, Any],
) -> tuple[QueryScope, dict[str, DatasetVersion]]:
    """Every dataset the operator holds any grant for (usable or not: decide() says why not)."""
    mine = grants_of(conn, operator.id)
    named = set(kind.referenced_datasets(request))
    tables: dict[str, TableScope] = {}
    versions: dict[str, DatasetVersion] = {}
    for grant in mine:
        if grant.dataset in tables:
            continue
        version = get_version(conn, platform, grant.dataset)
        versions[grant.dataset] = version
        tables[grant.dataset] = TableScope(grant.dataset, version.classification, grant.columns)
    relevant = [g for g in mine if g.dataset in named] or mine
    extras = (
        frozenset.intersection(*(g.extra_aggregates for g in relevant)) if relevant else frozenset()
    )
    expressions = bool(relevant) and all(g.aggregate_expressions for g in relevant)
    return QueryScope(
        tables=tables, extra_aggregates=extras, aggregate_expressions=expressions
    ), versions


def _refuse_ungranted(
    conn: Connection,
    operator: Principal,
    kind: JobKind,
    request: Mapping[str, Any],
    scope: QueryScope,
) -> None:
    """A registered dataset the operator holds no grant for is refused by the grant gate.

    Without this, admission would call it an unknown table: the scope holds only
    granted datasets. The rule that applies is ``not_granted`` (Art. 14).
    """
    outside = [n for n in kind.referenced_datasets(request) if n not in scope.tables]
    if not outside:
        return
    registered = set(
        conn.execute(select(datasets.c.name).where(datasets.c.name.in_(outside))).scalars()
    )
    missing = [n for n in outside if n in registered]
    if missing:
        may_run(conn, operator, missing, kind.name, datetime.now(UTC))


def _params(platform: Platform, used: Mapping[str, Grant]) -> DisclosureParams:
    params = platform_minimums(platform)
    for grant in used.values():
        params = params.tightened(grant.disclosure)
    return params


class JobService:
    """Submits and runs jobs; owns one :class:`Runner` (and its spare worker)."""

    def __init__(self, platform: Platform, *, spare: bool | None = None):
        self.platform = platform
        use_spare = platform.settings["job.spare_worker"] if spare is None else spare
        self.runner = Runner(_limits(platform), spare=use_spare)

    def close(self) -> None:
        self.runner.close()

    def submit(
        self, operator: Principal, request: Mapping[str, Any], kind_name: str = "sql_aggregate"
    ) -> JobOutcome:
        """Submit and run to the end (released, withheld, refused or failed)."""
        job_id, plan, used, versions = self._admit(operator, request, kind_name)
        if plan is None:
            return self.outcome(operator, job_id)
        try:
            self._execute(operator, job_id, get_kind(kind_name), plan, used, versions)
        except Exception as exc:
            self._fail(operator, job_id, exc)
        return self.outcome(operator, job_id)

    def _fail(self, operator: Principal, job_id: int, exc: Exception) -> None:
        """Any unexpected error after admission fails the job; nothing is released."""
        if isinstance(exc, SandboxError):
            reason = exc.to_dict()
        else:
            reason = {
                "code": "internal_error",
                "message": "the platform failed while running the job; nothing was released",
                "article": "Art. 8",
            }
        with self.platform.store.transaction() as conn:
            state = JobState(
                conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one()
            )
            if may_transition(state, JobState.FAILED):
                _transition(
                    self.platform,
                    conn,
                    job_id,
                    operator,
                    JobState.FAILED,
                    {"code": reason["code"], "error": type(exc).__name__},
                    "Art. 8",
                    reason_json=json.dumps(reason),
                )

    def _admit(self, operator: Principal, request: Mapping[str, Any], kind_name: str):
        platform = self.platform
        if operator.role is not Role.OPERATOR:
            raise PermissionDenied(
                f"{operator.name} is a {operator.role.value}; only an operator "
                "may submit jobs (Art. 14)",
                article="Art. 14",
            )
        kind = get_kind(kind_name)
        kind.referenced_datasets(request)  # a malformed request is refused before it is recorded
        now = now_utc()
        with platform.store.transaction() as conn:
            job_id = conn.execute(
                jobs.insert().values(
                    operator_id=operator.id,
                    kind=kind.name,
                    request_json=json.dumps(dict(request)),
                    status=JobState.SUBMITTED.value,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            platform.record(
                conn,
                operator.actor,
                "job.submitted",
                f"job:{job_id}",
                {"kind": kind.name, "request": dict(request)},
                "Art. 7",
            )
        try:
            with platform.store.read() as conn:
                scope, versions = _scope(conn, platform, operator, kind, request)
                _refuse_ungranted(conn, operator, kind, request, scope)
                plan = kind.plan(request, scope)
                used = may_run(conn, operator, plan.tables, kind.name, datetime.now(UTC))
            params = _params(platform, used)
        except PolicyRefusal as refusal:
            reason = refusal.to_dict()
            with platform.store.transaction() as conn:
                _transition(
                    platform,
                    conn,
                    job_id,
                    operator,
                    JobState.REFUSED,
                    {"rule": refusal.rule, "subject": refusal.subject},
                    refusal.article or "Art. 15",
                    reason_json=json.dumps(reason),
                )
            return job_id, None, None, None
        inputs = {
            t: {
                "dataset": t,
                "version": versions[t].version,
                "sha256": versions[t].sha256,
                "grant": used[t].id,
            }
            for t in plan.tables
        }
        with platform.store.transaction() as conn:
            _transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.QUEUED,
                {"inputs": list(inputs.values()), "params": params.to_dict()},
                "Art. 14",
                inputs_json=json.dumps(list(inputs.values())),
            )
        return job_id, plan, (used, params), versions

    def _execute(
        self,
        operator: Principal,
        job_id: int,
        kind: JobKind,
        plan: JobPlan,
        used_params,
        versions: Mapping[str, DatasetVersion],
    ) -> None:
        platform = self.platform
        used, params = used_params
        with platform.store.transaction() as conn:
            _transition(platform, conn, job_id, operator, JobState.RUNNING, {"engine": "duckdb"})
        runtime: dict[str, Any] = {}

        def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
            result = self.runner.run(sql, tables)
            runtime.update(
                layers=list(result.layers),
                wait_s=round(result.wait_s, 4),
                run_s=round(result.total_s, 4),
                spare_used=result.spare_used,
            )
            return result.table

        try:
            raw = kind.run(plan, execute, {t: v.path for t, v in versions.items()})
        except JobFailed as failure:
            with platform.store.transaction() as conn:
                _transition(
                    platform,
                    conn,
                    job_id,
                    operator,
                    JobState.FAILED,
                    {"code": failure.code, "message": failure.message},
                    "Art. 8",
                    reason_json=json.dumps(failure.to_dict()),
                    runtime_json=json.dumps(runtime),
                )
            return
        with platform.store.transaction() as conn:
            _transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.CHECKING,
                {"rows": raw.num_rows, "isolation": runtime.get("layers", [])},
                runtime_json=json.dumps(runtime),
            )
        result = kind.check(plan, raw, params)
        report = _report(result, params)
        if result.verdict in (OutputVerdict.RELEASED, OutputVerdict.RELEASED_WITH_SUPPRESSIONS):
            self._release(operator, job_id, plan, result, report, used, versions)
            return
        self._withhold(operator, job_id, result, report)

    def _release(self, operator, job_id, plan, result: CheckResult, report, used, versions):
        platform = self.platform
        product_id = f"prod-{job_id:06d}"
        manifest = {
            "job": {
                "id": job_id,
                "kind": plan.kind,
                "operator": operator.name,
                "sql": plan.details.get("sql"),
            },
            "datasets": [
                {
                    "name": t,
                    "version": versions[t].version,
                    "sha256": versions[t].sha256,
                    "rows": versions[t].rows,
                }
                for t in plan.tables
            ],
            "grants": sorted({g.id for g in used.values()}),
            "rules": report["params"],
            "verdict": result.verdict.name.lower(),
            "check": {"counts": report["counts"], "summary": report["summary"]},
        }
        target = None
        try:
            with platform.store.transaction() as conn:
                target = write_product(
                    platform,
                    conn,
                    product_id=product_id,
                    job_id=job_id,
                    operator=operator,
                    table=result.released,
                    report=report,
                    manifest_fields=manifest,
                )
                _transition(
                    platform,
                    conn,
                    job_id,
                    operator,
                    JobState.RELEASED,
                    {"product": product_id, "verdict": result.verdict.name.lower()},
                    report_json=json.dumps(report),
                    product_id=product_id,
                )
        except BaseException:
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            raise

    def _withhold(self, operator, job_id, result: CheckResult, report) -> None:
        platform = self.platform
        # The checked table stays inside the platform for the output review.
        held = platform.home / "held" / f"job-{job_id:06d}.parquet"
        held.parent.mkdir(exist_ok=True)
        pq.write_table(result.released, held)
        with platform.store.transaction() as conn:
            _transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.WITHHELD,
                {"verdict": result.verdict.name.lower(), "counts": report["counts"]},
                report_json=json.dumps(report),
            )

    def outcome(self, viewer: Principal, job_id: int) -> JobOutcome:
        with self.platform.store.read() as conn:
            return job_outcome(conn, viewer, job_id)


def job_outcome(conn: Connection, viewer: Principal, job_id: int) -> JobOutcome:
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if row is None or (viewer.role is Role.OPERATOR and row.operator_id != viewer.id):
        raise NotFound(f"no job {job_id} of yours")
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} may not read jobs (Art. 7)", article="Art. 7"
        )
    return JobOutcome(
        job_id=row.id,
        state=JobState(row.status),
        reason=json.loads(row.reason_json) if row.reason_json else None,
        report=json.loads(row.report_json) if row.report_json else None,
        product_id=row.product_id,
    )


def _report(result: CheckResult, params: DisclosureParams) -> dict:
    return {
        "verdict": result.verdict.name.lower(),
        "summary": result.summary_text(),
        "counts": dict(result.counts),
        "params": params.to_dict(),
        "cells": [
            {
                "row": c.row,
                "column": c.column,
                "verdict": c.verdict.name.lower(),
                "rules": list(c.rules),
                "summary": c.summary,
            }
            for c in result.cells
        ],
    }


def list_jobs(conn: Connection, viewer: Principal) -> list[dict]:
    stmt = select(
        jobs.c.id,
        jobs.c.kind,
        jobs.c.status,
        jobs.c.product_id,
        jobs.c.created_at,
        jobs.c.operator_id,
    ).order_by(jobs.c.id)
    if viewer.role is Role.OPERATOR:
        stmt = stmt.where(jobs.c.operator_id == viewer.id)
    elif viewer.role not in (Role.AUTHORITY, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} may not list jobs (Art. 7)", article="Art. 7"
        )
    return [dict(r) for r in conn.execute(stmt).mappings()]
