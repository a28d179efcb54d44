"""The path of a job: submit, policy check, isolated run, output check, release.

:class:`JobService` moves a job through the state machine of
:mod:`sandbox.run.jobstate`. :meth:`JobService.enqueue` records the submission and
admits it (admission, the grants gate), leaving it ``refused`` or ``queued``
with the dataset versions it was admitted against; :meth:`JobService.run`
claims a queued job, checks it again (a grant may have been suspended
meanwhile), runs it in an isolated worker, applies the output check and
releases a signed product or withholds the output for review.
:meth:`JobService.submit` does both, for the CLI. A refusal names the rule,
the subject and the article; a failure names the limit. The store keeps the
whole check report (which rules fired, cell by cell) for the authority and the
auditors; the operator reads :mod:`sandbox.run.views`: a withheld job is only
"withheld for review", a released one lists its suppressed cells, never why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs import is_sql_kind, sql_kind
from jobs.base import SqlKind
from policies.disclosure import CheckResult, OutputVerdict
from policies.errors import JobFailed, PermissionDenied, PolicyRefusal, SandboxError
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_active
from sandbox.core.store import jobs
from sandbox.guard import dp_budget, lineage_audit, person_jobs
from sandbox.guard.history import difference, history_of
from sandbox.run import leases
from sandbox.run.admission import PERSON_JOB, Prepared, prepare
from sandbox.run.executors import with_numbers
from sandbox.run.jobstate import (
    JobOutcome,
    JobState,
    claim_queued,
    job_outcome,
    may_transition,
    next_queued,
    open_job,
    refuse,
    state_of,
    transition,
)
from sandbox.run.runner import Limits, Runner
from sandbox.run.settle import (
    Withhold,
    hold_entities,
    manifest_of,
    release,
    report_of,
    unguarded,
    withhold,
)


def _limits(platform: Platform) -> Limits:
    s = platform.settings
    return Limits(
        time_s=s.job.time_limit_s,
        memory_mb=s.job.memory_limit_mb,
        max_rows=s.job.max_output_rows,
        threads=s.job.threads,
    )


def _safe_reason(exc: Exception) -> dict:
    if isinstance(exc, SandboxError):
        return exc.to_dict()
    return {
        "code": "internal_error",
        "message": "the platform failed while running the job; nothing was released",
        "article": "Art. 8",
    }


RELEASABLE = (OutputVerdict.RELEASED, OutputVerdict.RELEASED_WITH_SUPPRESSIONS)


class JobService:
    """Submits and runs jobs; owns one :class:`Runner` (and its spare worker)."""

    def __init__(self, platform: Platform, *, spare: bool | None = None):
        self.platform = platform
        use_spare = platform.settings.job.spare_worker if spare is None else spare
        self.runner = Runner(_limits(platform), spare=use_spare)
        self.history = history_of(platform)

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
        kind = sql_kind(kind_name)
        kind.referenced_datasets(request)  # a malformed request is refused before it is recorded
        job_id = open_job(platform, operator, kind.name, request)
        try:
            with platform.store.read() as conn:
                prepared = prepare(conn, platform, operator, kind, request)
        except PolicyRefusal as refusal:
            with platform.store.transaction() as conn:
                refuse(platform, conn, job_id, operator, refusal)
            return self.outcome(operator, job_id)
        except Exception as exc:
            self._fail(job_id, exc)
            raise
        with platform.store.transaction() as conn:
            self._queue(conn, operator, job_id, prepared)
        return self.outcome(operator, job_id)  # read once the transaction committed

    def _queue(
        self, conn: Connection, operator: Principal, job_id: int, prepared: Prepared
    ) -> None:
        """Queue an admitted job, in the caller's transaction: the person-job cap and the
        DP charge are taken here, so two jobs cannot both take the last place or epsilon;
        a refusal of either counts and charges nothing."""
        platform = self.platform
        try:
            if any(hold.setting == PERSON_JOB for hold in prepared.review):
                person_jobs.reserve(
                    conn,
                    job_id,
                    operator.id,
                    prepared.used,
                    platform.settings.review.person_jobs_per_quarter,
                    datetime.now(UTC),
                )
            if prepared.dp is not None:
                dp_budget.reserve(platform, conn, operator.actor, prepared.dp, job_id)
        except PolicyRefusal as refusal:
            refuse(platform, conn, job_id, operator, refusal)
            return
        inputs = inputs_of(prepared)
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

    def run(self, job_id: int) -> JobOutcome | None:
        """Claim a queued job and run it to its end; None if it was not queued."""
        platform = self.platform
        with platform.store.transaction() as conn:
            row = claim_queued(conn, job_id)
            if row is None or not is_sql_kind(row.kind):  # a model's training: its own path
                return None
            operator = by_id(conn, row.operator_id)
            detail = {"engine": "duckdb"}
            if row.kind == "sql_aggregate":
                detail["engine"] = platform.settings.engine
                if detail["engine"] == "duckdb" and platform.settings.ray.dispatch_jobs:
                    detail["dispatch"] = "ray"
            transition(platform, conn, job_id, operator, JobState.RUNNING, detail)
            leases.claimed(conn, job_id)  # PostgreSQL: this host's, for recover_gone
        kind = sql_kind(row.kind)
        request = json.loads(row.request_json)
        pinned = {i["dataset"]: i["version"] for i in json.loads(row.inputs_json or "[]")}
        try:
            with platform.store.read() as conn:
                # an operator deactivated since it queued the job: nothing runs for it
                require_active(conn, operator.id)
                prepared = prepare(conn, platform, operator, kind, request, pinned)
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
            row = conn.execute(select(jobs.c.operator_id).where(jobs.c.id == job_id)).one()
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

    def _execute(self, operator: Principal, job_id: int, kind: SqlKind, prepared: Prepared) -> None:
        """Run the admitted plan, check its output, then release it or hold it for review."""
        runtime: dict[str, Any] = {}
        snapshots = {t: v.path for t, v in prepared.versions.items()}
        try:
            execute = with_numbers(self.platform, self.runner, prepared, runtime)
            raw = kind.run(prepared.plan, execute, snapshots)
        except JobFailed as failure:
            self._to(operator, job_id, JobState.FAILED, runtime, failure=failure)
            return
        self._to(operator, job_id, JobState.CHECKING, runtime, rows=raw.num_rows)
        if prepared.dp is None:
            result = kind.check(prepared.plan, raw, prepared.params)
        else:  # nothing judged on true values: the declared grid, every cell with noise
            from policies.dp import release_on_grid

            grid = prepared.plan.grid.values if prepared.plan.grid is not None else None
            raw, result = release_on_grid(raw, prepared.plan.payload.spec, grid, prepared.params)
        result = self._noise(prepared, raw, result)
        # --- lineage audit (issue 17, item 3): with the lineage's earlier releases ---
        result = lineage_audit.checked(self.platform, kind, prepared, raw, result)
        outcome = result.lineage
        # ---
        review = [
            f"grant {g.id}" for g in prepared.used.values() if getattr(g, "review_required", False)
        ]
        settings = self.platform.settings
        review += [hold.why for hold in prepared.review if settings.value(hold.setting)]
        if result.verdict in RELEASABLE and not review:
            try:
                self._release_checked(operator, job_id, prepared, raw, result)
                return
            except Withhold as held:
                result = held.result
        elif self.platform.settings.differencing.enabled and prepared.lineage is not None:
            # The reviewer sees the cells the differencing defence holds back; the
            # history is checked again, and written, when the review releases it.
            with self.platform.store.transaction() as conn:
                result, _cells = difference(
                    conn,
                    self.history,
                    prepared.lineage,
                    raw,
                    prepared.plan.payload.spec,
                    result,
                    self.platform.settings.differencing.k,
                )
        report = report_of(result, prepared.params)
        if outcome is not None:  # lineage audit: what the checkers read of it
            report["lineage_audit"] = lineage_audit.note_of(outcome)
        manifest = manifest_of(job_id, operator, prepared, result, report)
        withhold(self.platform, operator, job_id, result, report, manifest, review=review)
        hold_entities(self.platform, job_id, prepared, raw, result)
        # --- lineage audit: the withheld cells wait for the checkers' release (held_finish)
        with self.platform.store.transaction() as conn:
            lineage_audit.record(conn, prepared, job_id, outcome, result, now_utc(), pending=True)

    def _to(
        self,
        operator: Principal,
        job_id: int,
        state: JobState,
        runtime: dict[str, Any],
        *,
        failure: JobFailed | None = None,
        rows: int = 0,
    ) -> None:
        """The run's end: failed (naming the limit) or on to the output check."""
        with self.platform.store.transaction() as conn:
            if failure is not None:
                transition(
                    self.platform,
                    conn,
                    job_id,
                    operator,
                    state,
                    {"code": failure.code, "message": failure.message},
                    "Art. 8",
                    reason_json=json.dumps(failure.to_dict()),
                    runtime_json=json.dumps(runtime),
                )
                return
            where: dict[str, Any] = {
                k: runtime[k] for k in ("engine", "master", "dispatch", "node") if k in runtime
            }
            transition(
                self.platform,
                conn,
                job_id,
                operator,
                state,
                # where it ran, when not in a local worker (issue 9)
                {"rows": rows, "isolation": runtime.get("layers", []), **where},
                runtime_json=json.dumps(runtime),
            )

    def _release_checked(
        self, operator: Principal, job_id: int, prepared: Prepared, raw: pa.Table, result
    ) -> None:
        """Release a releasable output; with the differencing defence or the DP mode on,
        the last checks run inside the release transaction (they may withhold it)."""
        finish = self._guard(operator, job_id, prepared, raw)(result)
        report = report_of(result, prepared.params)  # with finish: what is expected to leave
        manifest = manifest_of(job_id, operator, prepared, result, report)
        release(
            self.platform, operator, job_id, result.released, report, manifest,
            JobState.CHECKING, finish=finish,
        )  # fmt: skip

    # --- issue 11: DP noise, the differencing gate, the budget ---------------------

    def _noise(self, prepared: Prepared, raw: pa.Table, result: CheckResult) -> CheckResult:
        """In the DP mode, every released cell is replaced by its noisy value."""
        mode = prepared.dp
        if mode is None:
            return result
        from jobs.sql_evidence import argument_columns
        from policies.dp import add_noise

        admitted = prepared.plan.payload
        bounds = {
            i: mode.bounds[name]
            for i, name in argument_columns(admitted).items()
            if name is not None and name in mode.bounds
        }
        # OpenDP's discrete Laplace; each column's scale and 95% half-width go with the table.
        # The epsilon was charged when the job was queued (checked again at release).
        reads = prepared.versions.get(prepared.lineage or "")
        rows_per_entity = reads.classification.rows_per_entity if reads is not None else 1
        return add_noise(
            result, raw, admitted.spec, mode.per_query, bounds, rows_per_entity=rows_per_entity
        )

    def _guard(
        self, operator: Principal, job_id: int, prepared: Prepared, raw: pa.Table
    ) -> Callable[[CheckResult], Callable[[Connection], tuple] | None]:
        """What runs inside the release transaction: the differencing check against the
        history as committed now, the history's new cells, the DP spend."""
        platform = self.platform
        # the DP mode's cells are judged on nothing true: no differencing suppression
        differencing = (
            platform.settings.differencing.enabled and prepared.lineage and prepared.dp is None
        )
        lineage = lineage_audit.keys_of(prepared)  # the audit across releases applies
        if not differencing and prepared.dp is None and lineage is None:
            return unguarded
        k = platform.settings.differencing.k
        kind = sql_kind(prepared.plan.kind)

        def bind(result: CheckResult):
            def finish(conn: Connection) -> tuple[pa.Table, dict, dict, dict]:
                checked, cells, details = result, [], {}
                # --- lineage audit: again if the history grew since the check ---
                outcome = None
                if lineage is not None:
                    checked = lineage_audit.guard(conn, kind, prepared, raw, result)
                    outcome = checked.lineage
                    if checked.verdict not in RELEASABLE:
                        raise Withhold(checked)
                # ---
                if differencing:
                    assert prepared.lineage  # differencing is on only for a job with a lineage
                    checked, cells = difference(
                        conn,
                        self.history,
                        prepared.lineage,
                        raw,
                        prepared.plan.payload.spec,
                        checked,
                        k,
                    )
                    if checked.verdict not in (
                        OutputVerdict.RELEASED,
                        OutputVerdict.RELEASED_WITH_SUPPRESSIONS,
                    ):
                        raise Withhold(checked)
                    recorded = self.history.record(conn, prepared.lineage, job_id, cells, now_utc())
                    details["differencing"] = {
                        "k": k,
                        "suppressed": checked.counts.get("differencing", 0),
                        "recorded_cells": recorded,
                    }
                report = report_of(checked, prepared.params)
                if outcome is not None:  # --- lineage audit: record the released cells ---
                    written = lineage_audit.record(conn, prepared, job_id, outcome, checked,
                                                   now_utc())  # fmt: skip
                    report["lineage_audit"] = lineage_audit.note_of(outcome)
                    details["lineage_audit"] = {"recorded_cells": written}
                if prepared.dp is not None:
                    # spent when queued; a job queued before the DP mode is charged now
                    spent = dp_budget.charged(platform, conn, operator.actor, prepared.dp, job_id)
                    from policies.dp import released_noise

                    noise = released_noise(checked.released) or {}
                    report["dp"] = details["dp"] = {
                        **spent,
                        "mechanism": "discrete Laplace (OpenDP)",
                        # per column: its scale and the half-width of a 95% interval
                        "columns": noise.get("columns"),
                    }
                manifest = manifest_of(job_id, operator, prepared, checked, report)
                return checked.released, report, manifest, details

            return finish

        return bind

    def outcome(self, viewer: Principal, job_id: int) -> JobOutcome:
        with self.platform.store.read() as conn:
            return job_outcome(conn, viewer, job_id)


def inputs_of(prepared: Prepared) -> list[dict[str, Any]]:
    """What a queued job was admitted against, one entry per dataset it reads: version,
    hash, grant, and the county its input is cut to (a county agreement's slice, Art. 5)."""
    inputs = []
    for t in prepared.plan.tables:
        version = prepared.versions[t]
        entry = {"dataset": t, "version": version.version, "sha256": version.sha256}
        entry["grant"] = prepared.used[t].id
        inputs.append({**entry, **({"county": version.county} if version.county else {})})
    return inputs
