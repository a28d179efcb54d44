"""The path of a job: submit, policy check, isolated run, output check, release.

:class:`JobService` moves a job through the state machine of
:mod:`sandbox.jobstate`. :meth:`JobService.enqueue` records the submission and
admits it (admission, the grants gate), leaving it ``refused`` or ``queued``
with the dataset versions it was admitted against; :meth:`JobService.run`
claims a queued job, checks it again (a grant may have been suspended
meanwhile), runs it in an isolated worker, applies the output check and
releases a signed product or withholds the output for review.
:meth:`JobService.submit` does both, for the CLI. A refusal names the rule,
the subject and the article; a failure names the limit; a withheld output says
which rules fired, never the hidden values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
from policies.errors import Conflict, JobFailed, PermissionDenied, PolicyRefusal, SandboxError

from .grants import grants_of, may_run
from .jobstate import (  # noqa: F401  (re-exported: the job API lives here)
    TRANSITIONS,
    JobOutcome,
    JobState,
    cancel_operator_jobs,
    job_outcome,
    list_jobs,
    may_transition,
    next_queued,
    recover,
    state_of,
    transition,
)
from .ledger import now_utc
from .platform import Platform
from .principals import Principal, Role, by_id
from .release import write_product
from .runner import Limits, Runner
from .store import datasets, jobs
from .vault import DatasetVersion, get_version


@dataclass(frozen=True)
class Prepared:
    """A job that passed admission and the grants gate, ready to run."""

    plan: JobPlan
    used: Mapping[str, Grant]
    params: DisclosureParams
    versions: Mapping[str, DatasetVersion]


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
    pinned: Mapping[str, int] | None = None,
) -> tuple[QueryScope, dict[str, DatasetVersion]]:
    """Every dataset the operator holds any grant for (usable or not: decide() says why not).

    ``pinned`` names the dataset versions recorded when the job was queued, so a
    queued job reads exactly what it was admitted against.
    """
    mine = grants_of(conn, operator.id)
    named = set(kind.referenced_datasets(request))
    tables: dict[str, TableScope] = {}
    versions: dict[str, DatasetVersion] = {}
    for grant in mine:
        if grant.dataset in tables:
            continue
        version = get_version(conn, platform, grant.dataset, (pinned or {}).get(grant.dataset))
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


def _prepare(
    conn: Connection,
    platform: Platform,
    operator: Principal,
    kind: JobKind,
    request: Mapping[str, Any],
    pinned: Mapping[str, int] | None = None,
) -> Prepared:
    """Admission and the grants gate; raises PolicyRefusal naming rule and article."""
    scope, versions = _scope(conn, platform, operator, kind, request, pinned)
    _refuse_ungranted(conn, operator, kind, request, scope)
    plan = kind.plan(request, scope)
    used = may_run(conn, operator, plan.tables, kind.name, datetime.now(UTC))
    return Prepared(plan, used, _params(platform, used), versions)


def _safe_reason(exc: Exception) -> dict:
    if isinstance(exc, SandboxError):
        return exc.to_dict()
    return {
        "code": "internal_error",
        "message": "the platform failed while running the job; nothing was released",
        "article": "Art. 8",
    }


def _held_paths(platform: Platform, job_id: int) -> tuple[Path, Path]:
    folder = platform.home / "held"
    return folder / f"job-{job_id:06d}.parquet", folder / f"job-{job_id:06d}.json"


class JobService:
    """Submits and runs jobs; owns one :class:`Runner` (and its spare worker)."""

    def __init__(self, platform: Platform, *, spare: bool | None = None):
        self.platform = platform
        use_spare = platform.settings["job.spare_worker"] if spare is None else spare
        self.runner = Runner(_limits(platform), spare=use_spare)

    def close(self) -> None:
        self.runner.close()

    # --- the two halves of a job -------------------------------------------

    def submit(
        self, operator: Principal, request: Mapping[str, Any], kind_name: str = "sql_aggregate"
    ) -> JobOutcome:
        """Submit and run to the end (released, withheld, refused or failed)."""
        outcome = self.enqueue(operator, request, kind_name)
        if outcome.state is JobState.QUEUED:
            self.run(outcome.job_id)
        return self.outcome(operator, outcome.job_id)

    def enqueue(
        self, operator: Principal, request: Mapping[str, Any], kind_name: str = "sql_aggregate"
    ) -> JobOutcome:
        """Record the submission and admit it: the job ends ``refused`` or ``queued``."""
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
                prepared = _prepare(conn, platform, operator, kind, request)
        except PolicyRefusal as refusal:
            with platform.store.transaction() as conn:
                transition(
                    platform,
                    conn,
                    job_id,
                    operator,
                    JobState.REFUSED,
                    {"rule": refusal.rule, "subject": refusal.subject},
                    refusal.article or "Art. 15",
                    reason_json=json.dumps(refusal.to_dict()),
                )
            return self.outcome(operator, job_id)
        except Exception as exc:
            self._fail(job_id, exc)
            raise
        inputs = [
            {
                "dataset": t,
                "version": prepared.versions[t].version,
                "sha256": prepared.versions[t].sha256,
                "grant": prepared.used[t].id,
            }
            for t in prepared.plan.tables
        ]
        with platform.store.transaction() as conn:
            transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.QUEUED,
                {"inputs": inputs, "params": prepared.params.to_dict()},
                "Art. 14",
                inputs_json=json.dumps(inputs),
            )
        return self.outcome(operator, job_id)

    def run(self, job_id: int) -> JobOutcome | None:
        """Claim a queued job and run it to its end; None if it was not queued."""
        platform = self.platform
        with platform.store.transaction() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None or row.status != JobState.QUEUED.value:
                return None
            operator = by_id(conn, row.operator_id)
            transition(platform, conn, job_id, operator, JobState.RUNNING, {"engine": "duckdb"})
        kind = get_kind(row.kind)
        request = json.loads(row.request_json)
        pinned = {i["dataset"]: i["version"] for i in json.loads(row.inputs_json or "[]")}
        try:
            with platform.store.read() as conn:
                prepared = _prepare(conn, platform, operator, kind, request, pinned)
            self._execute(operator, job_id, kind, prepared)
        except Exception as exc:
            self._fail(job_id, exc)
        return self.outcome(operator, job_id)

    def run_next(self) -> JobOutcome | None:
        """Run the oldest queued job, if any (the server's executor loop)."""
        with self.platform.store.read() as conn:
            job_id = next_queued(conn)
        return None if job_id is None else self.run(job_id)

    def _fail(self, job_id: int, exc: Exception) -> None:
        """Any error after submission fails the job; nothing is released."""
        reason = _safe_reason(exc)
        with self.platform.store.transaction() as conn:
            if not may_transition(state_of(conn, job_id), JobState.FAILED):
                return
            row = conn.execute(select(jobs.c.operator_id).where(jobs.c.id == job_id)).first()
            transition(
                self.platform,
                conn,
                job_id,
                by_id(conn, row.operator_id),
                JobState.FAILED,
                {"code": reason["code"], "error": type(exc).__name__},
                reason.get("article") or "Art. 8",
                reason_json=json.dumps(reason),
            )

    def _execute(self, operator: Principal, job_id: int, kind: JobKind, prepared: Prepared) -> None:
        platform = self.platform
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

        snapshots = {t: v.path for t, v in prepared.versions.items()}
        try:
            raw = kind.run(prepared.plan, execute, snapshots)
        except JobFailed as failure:
            with platform.store.transaction() as conn:
                transition(
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
            transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.CHECKING,
                {"rows": raw.num_rows, "isolation": runtime.get("layers", [])},
                runtime_json=json.dumps(runtime),
            )
        result = kind.check(prepared.plan, raw, prepared.params)
        report = _report(result, prepared.params)
        manifest = _manifest(job_id, operator, prepared, result, report)
        releasable = result.verdict in (
            OutputVerdict.RELEASED,
            OutputVerdict.RELEASED_WITH_SUPPRESSIONS,
        )
        review = [g.id for g in prepared.used.values() if getattr(g, "review_required", False)]
        if releasable and not review:
            self._release(operator, job_id, result.released, report, manifest, JobState.CHECKING)
            return
        self._withhold(operator, job_id, result, report, manifest, review_required=bool(review))

    def _release(
        self,
        operator: Principal,
        job_id: int,
        table: pa.Table,
        report: dict,
        manifest: dict,
        expected: JobState,
        details: Mapping[str, Any] | None = None,
    ) -> str:
        platform = self.platform
        product_id = f"prod-{job_id:06d}"
        target = None
        try:
            with platform.store.transaction() as conn:
                if state_of(conn, job_id) is not expected:
                    raise Conflict(f"job {job_id} is no longer {expected.value}")
                target = write_product(
                    platform,
                    conn,
                    product_id=product_id,
                    job_id=job_id,
                    operator=operator,
                    table=table,
                    report=report,
                    manifest_fields=manifest,
                )
                transition(
                    platform,
                    conn,
                    job_id,
                    operator,
                    JobState.RELEASED,
                    {"product": product_id, "verdict": manifest["verdict"], **(details or {})},
                    report_json=json.dumps(report),
                    product_id=product_id,
                )
        except BaseException:
            if target is not None:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return product_id

    def _withhold(
        self,
        operator: Principal,
        job_id: int,
        result: CheckResult,
        report: dict,
        manifest: dict,
        *,
        review_required: bool,
    ) -> None:
        platform = self.platform
        # The checked table stays inside the platform, for the output review.
        table_path, meta_path = _held_paths(platform, job_id)
        table_path.parent.mkdir(exist_ok=True)
        pq.write_table(result.released, table_path)
        meta_path.write_text(json.dumps({"report": report, "manifest": manifest}, default=str))
        why = (
            "the agreement asks for human output review"
            if review_required
            else "the output check holds cells for review"
        )
        with platform.store.transaction() as conn:
            transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.WITHHELD,
                {"verdict": result.verdict.name.lower(), "counts": report["counts"], "why": why},
                report_json=json.dumps({**report, "withheld_because": why}),
            )

    def outcome(self, viewer: Principal, job_id: int) -> JobOutcome:
        with self.platform.store.read() as conn:
            return job_outcome(conn, viewer, job_id)


def release_held(platform: Platform, job_id: int, reviewers: list[str]) -> str:
    """Release a withheld job's checked output after the output review approved it.

    The released table is the one the output check produced (suppressed cells
    stay empty); the manifest names the reviewers. Returns the product id.
    """
    table_path, meta_path = _held_paths(platform, job_id)
    if not table_path.exists() or not meta_path.exists():
        raise Conflict(f"job {job_id} has no held output to release")
    held = json.loads(meta_path.read_text())
    with platform.store.read() as conn:
        row = conn.execute(select(jobs.c.operator_id).where(jobs.c.id == job_id)).first()
        if row is None:
            raise Conflict(f"no job {job_id}")
        operator = by_id(conn, row.operator_id)
    manifest = {**held["manifest"], "review": {"approved_by": list(reviewers)}}
    service = JobService.__new__(JobService)
    service.platform = platform
    product_id = service._release(
        operator,
        job_id,
        pq.read_table(table_path),
        held["report"],
        manifest,
        JobState.WITHHELD,
        {"reviewers": list(reviewers)},
    )
    table_path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    return product_id


def _manifest(
    job_id: int,
    operator: Principal,
    prepared: Prepared,
    result: CheckResult,
    report: dict,
) -> dict:
    plan, versions = prepared.plan, prepared.versions
    return {
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
        "grants": sorted({g.id for g in prepared.used.values()}),
        "agreements": sorted(
            {g.agreement_id for g in prepared.used.values() if getattr(g, "agreement_id", None)}
        ),
        "rules": report["params"],
        "verdict": result.verdict.name.lower(),
        "check": {"counts": report["counts"], "summary": report["summary"]},
    }


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
