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
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import datasets, jobs
from sandbox.data.grants import grants_in_use, grants_of, may_run
from sandbox.data.release import write_product
from sandbox.data.vault import DatasetVersion, get_version
from sandbox.guard import dp_budget
from sandbox.guard.history import difference, history_of
from sandbox.run.jobstate import (  # noqa: F401  (re-exported: the job API lives here)
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
from sandbox.run.runner import Limits, Runner
from sandbox.run.views import released_manifest, released_report


@dataclass(frozen=True)
class Prepared:
    """A job that passed admission and the grants gate, ready to run."""

    plan: JobPlan
    used: Mapping[str, Grant]
    params: DisclosureParams
    versions: Mapping[str, DatasetVersion]
    lineage: str | None = None  # the dataset whose entities the cells count (differencing)
    dp: dp_budget.DpMode | None = None  # the agreement's differential-privacy mode


class _Withhold(Exception):
    """Raised inside a release transaction when the differencing check leaves nothing to
    release: the transaction rolls back and the output is withheld instead."""

    def __init__(self, result: CheckResult):
        super().__init__("withhold")
        self.result = result


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
    now: datetime,
    pinned: Mapping[str, int] | None = None,
) -> tuple[QueryScope, dict[str, DatasetVersion], dict[str, Grant]]:
    """Every dataset the operator holds any grant for (usable or not: decide() says why not),
    with the columns of the grant the job would run under (:func:`grants_in_use`).

    ``pinned`` names the dataset versions recorded when the job was queued, so a
    queued job reads exactly what it was admitted against.
    """
    in_use = grants_in_use(conn, operator, kind.name, now)
    mine = grants_of(conn, operator.id)
    named = set(kind.referenced_datasets(request))
    tables: dict[str, TableScope] = {}
    versions: dict[str, DatasetVersion] = {}
    for name, grant in in_use.items():
        version = get_version(conn, platform, name, (pinned or {}).get(name))
        versions[name] = version
        tables[name] = TableScope(name, version.classification, grant.columns)
    relevant = [g for g in mine if g.dataset in named] or mine
    extras = (
        frozenset.intersection(*(g.extra_aggregates for g in relevant)) if relevant else frozenset()
    )
    expressions = bool(relevant) and all(g.aggregate_expressions for g in relevant)
    scope = QueryScope(tables=tables, extra_aggregates=extras, aggregate_expressions=expressions)
    return scope, versions, in_use


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
    now = datetime.now(UTC)
    scope, versions, admitted_under = _scope(conn, platform, operator, kind, request, now, pinned)
    _refuse_ungranted(conn, operator, kind, request, scope)
    plan = kind.plan(request, scope)
    used = may_run(conn, operator, plan.tables, kind.name, now)
    for name, grant in used.items():
        if grant.id != admitted_under[name].id:  # cannot happen at one ``now``; never widen
            raise PolicyRefusal(
                "grant_changed",
                f"the grant for '{name}' changed while the job was admitted; submit it again",
                article="Art. 14",
                subject=name,
            )
    if plan.kind != "sql_aggregate":
        return Prepared(plan, used, _params(platform, used), versions)
    # Issue 11: the evidence the differencing defence and the DP mode need.
    from jobs.sql_evidence import _first_table_alias, argument_columns, with_evidence
    from policies.dp import refuse_unsupported

    lineage = _first_table_alias(plan.payload.tree).name
    mode = dp_budget.mode_for(conn, used, lineage)
    if mode is not None:
        refused = dp_budget.refusal(mode)
        if refused is not None:
            raise refused
        refuse_unsupported(plan.payload.spec, argument_columns(plan.payload), mode.bounds)
    entities = platform.settings["differencing.enabled"]
    if entities or mode is not None:
        clamp = {c: (b.lower, b.upper) for c, b in mode.bounds.items()} if mode else None
        sql = with_evidence(plan.payload, scope, entities=entities, clamp=clamp)
        plan = replace(plan, engine_sql=sql)
    return Prepared(plan, used, _params(platform, used), versions, lineage, mode)


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
            detail = {"engine": "duckdb"}
            if row.kind == "sql_aggregate":
                detail["engine"] = platform.settings["engine"]
                if detail["engine"] == "duckdb" and platform.settings["ray.dispatch_jobs"]:
                    detail["dispatch"] = "ray"
            transition(platform, conn, job_id, operator, JobState.RUNNING, detail)
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

    def _spark_executor(self, runtime: dict[str, Any]) -> Callable[[str, Mapping], pa.Table]:
        """The executor of ``engine = spark``: the admitted SQL on the Spark session."""
        import time

        from sandbox.run.engines.spark import engine_for

        settings = self.platform.settings
        spark = engine_for(settings["spark.master"])

        def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
            started = time.time()
            table = spark.run(
                sql, tables, settings["job.max_output_rows"], settings["job.time_limit_s"]
            )
            runtime.update(
                engine="spark", master=spark.master, run_s=round(time.time() - started, 4)
            )
            return table

        return execute

    def _ray_executor(self, runtime: dict[str, Any]) -> Callable[[str, Mapping], pa.Table]:
        """The executor of ``ray.dispatch_jobs``: the same isolated worker, started by a
        Ray task on a cluster node."""
        from dataclasses import asdict

        from sandbox.run.engines.ray_pool import dispatch_sql_job

        address = self.platform.settings["ray.address"]
        limits = asdict(self.runner.limits)

        def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
            runtime.update(dispatch="ray")  # recorded even when the task fails
            table, layers, wait_s, run_s, node, total_s = dispatch_sql_job(
                sql, dict(tables), limits, address
            )
            runtime.update(
                dispatch="ray",
                node=node,
                layers=layers,
                wait_s=round(wait_s, 4),
                run_s=round(run_s, 4),
                task_s=round(total_s, 4),
            )
            return table

        return execute

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

        if prepared.plan.kind == "sql_aggregate":  # issue 9: same plan, same output check
            if platform.settings["engine"] == "spark":
                execute = self._spark_executor(runtime)
            elif platform.settings["ray.dispatch_jobs"]:
                execute = self._ray_executor(runtime)
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
                {
                    "rows": raw.num_rows,
                    "isolation": runtime.get("layers", []),
                    # where it ran, when not in a local worker (issue 9)
                    **{
                        k: runtime[k]
                        for k in ("engine", "master", "dispatch", "node")
                        if k in runtime
                    },
                },
                runtime_json=json.dumps(runtime),
            )
        result = kind.check(prepared.plan, raw, prepared.params)
        result = self._noise(prepared, raw, result)
        guard = self._guard(operator, job_id, prepared, raw)
        releasable = result.verdict in (
            OutputVerdict.RELEASED,
            OutputVerdict.RELEASED_WITH_SUPPRESSIONS,
        )
        review = [g.id for g in prepared.used.values() if getattr(g, "review_required", False)]
        if releasable and not review:
            finish = guard(result)
            try:
                if finish is None:
                    report = _report(result, prepared.params)
                    manifest = _manifest(job_id, operator, prepared, result, report)
                    self._release(
                        operator, job_id, result.released, report, manifest, JobState.CHECKING
                    )
                else:
                    self._release(operator, job_id, None, {}, {}, JobState.CHECKING, finish=finish)
                return
            except _Withhold as held:
                result = held.result
        elif platform.settings["differencing.enabled"] and prepared.lineage is not None:
            # The reviewer sees the cells the differencing defence holds back; the
            # history is checked again, and written, when the review releases it.
            with platform.store.transaction() as conn:
                result, _cells = difference(
                    conn,
                    self.history,
                    prepared.lineage,
                    raw,
                    prepared.plan.payload.spec,
                    result,
                    platform.settings["differencing.k"],
                )
        report = _report(result, prepared.params)
        manifest = _manifest(job_id, operator, prepared, result, report)
        self._withhold(operator, job_id, result, report, manifest, review_required=bool(review))
        self._hold_entities(job_id, prepared, raw, result)

    # --- issue 11: DP noise, the differencing gate, the budget ---------------------

    def _noise(self, prepared: Prepared, raw: pa.Table, result: CheckResult) -> CheckResult:
        """In the DP mode, every released cell is replaced by its noisy value."""
        mode = prepared.dp
        if mode is None:
            return result
        from jobs.sql_evidence import argument_columns
        from policies.dp import add_noise, rng

        admitted = prepared.plan.payload
        bounds = {
            i: mode.bounds[name]
            for i, name in argument_columns(admitted).items()
            if name in mode.bounds
        }
        noisy = add_noise(result, raw, admitted.spec, mode.budget.per_query, rng(), bounds)
        return noisy

    def _guard(
        self, operator: Principal, job_id: int, prepared: Prepared, raw: pa.Table
    ) -> Callable[[CheckResult], Callable]:
        """What runs inside the release transaction: the differencing check against the
        history as committed now, the history's new cells, the DP spend."""
        platform = self.platform
        differencing = platform.settings["differencing.enabled"] and prepared.lineage
        if not differencing and prepared.dp is None:
            return _unguarded
        k = platform.settings["differencing.k"]

        def bind(result: CheckResult):
            def finish(conn: Connection) -> tuple[pa.Table, dict, dict, dict]:
                checked, cells, details = result, [], {}
                if differencing:
                    checked, cells = difference(
                        conn,
                        self.history,
                        prepared.lineage,
                        raw,
                        prepared.plan.payload.spec,
                        result,
                        k,
                    )
                    if checked.verdict not in (
                        OutputVerdict.RELEASED,
                        OutputVerdict.RELEASED_WITH_SUPPRESSIONS,
                    ):
                        raise _Withhold(checked)
                    recorded = self.history.record(conn, prepared.lineage, job_id, cells, now_utc())
                    details["differencing"] = {
                        "k": k,
                        "suppressed": checked.counts.get("differencing", 0),
                        "recorded_cells": recorded,
                    }
                report = _report(checked, prepared.params)
                if prepared.dp is not None:
                    after = dp_budget.spend(platform, conn, operator.actor, prepared.dp, job_id)
                    report["dp"] = details["dp"] = {
                        "epsilon": prepared.dp.budget.per_query,
                        "mechanism": "discrete Laplace",
                        "remaining": after.remaining,
                    }
                manifest = _manifest(job_id, operator, prepared, checked, report)
                return checked.released, report, manifest, details

            return finish

        return bind

    def _hold_entities(
        self, job_id: int, prepared: Prepared, raw: pa.Table, result: CheckResult
    ) -> None:
        """Keep what the release of a withheld output needs: contributors, DP mode."""
        from jobs.sql_evidence import ENTITIES
        from policies.differencing import released_rows

        _table, meta_path = _held_paths(self.platform, job_id)
        if not meta_path.exists():
            return
        held = {"lineage": prepared.lineage}
        if ENTITIES in raw.column_names and prepared.lineage:
            held["labels"] = _labels_of(raw, prepared.plan.payload.spec)
            held["open_rows"] = released_rows(result, prepared.plan.payload.spec, raw.num_rows)
            held["entities"] = raw.column(ENTITIES).to_pylist()
        if prepared.dp is not None:
            held["dp"] = {"agreement_id": prepared.dp.agreement_id, "dataset": prepared.dp.dataset}
        meta_path.with_suffix(".entities.json").write_text(json.dumps(held, default=str))

    def _release(
        self,
        operator: Principal,
        job_id: int,
        table: pa.Table,
        report: dict,
        manifest: dict,
        expected: JobState,
        details: Mapping[str, Any] | None = None,
        finish: Callable[[Connection], tuple] | None = None,
    ) -> str:
        platform = self.platform
        product_id = f"prod-{job_id:06d}"
        target = None
        try:
            with platform.store.transaction() as conn:
                if state_of(conn, job_id) is not expected:
                    raise Conflict(f"job {job_id} is no longer {expected.value}")
                if finish is not None:
                    table, report, manifest, more = finish(conn)
                    details = {**(details or {}), **more}
                shown = released_report(report)  # the product leaves: the operator's view
                target = write_product(
                    platform,
                    conn,
                    product_id=product_id,
                    job_id=job_id,
                    operator=operator,
                    table=table,
                    report=shown,
                    manifest_fields=released_manifest(manifest, shown),
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
        shown = {**report, "summary": _withheld_summary(report["summary"], why)}
        with platform.store.transaction() as conn:
            transition(
                platform,
                conn,
                job_id,
                operator,
                JobState.WITHHELD,
                {"verdict": result.verdict.name.lower(), "counts": report["counts"], "why": why},
                report_json=json.dumps({**shown, "withheld_because": why}),
            )

    def outcome(self, viewer: Principal, job_id: int) -> JobOutcome:
        with self.platform.store.read() as conn:
            return job_outcome(conn, viewer, job_id)


def _withheld_summary(summary: str, why: str) -> str:
    """A withheld job's summary: its first line says it was withheld, never released.

    The output check's own first line ("Released: ...") is what the release would
    say after the review; until then the operator reads why nothing left.
    """
    first, _, rest = summary.partition("\n")
    if first.startswith("Released"):
        first = (
            f"Withheld: {why}; nothing is released until two output checkers approve it (Art. 15)."
        )
    return f"{first}\n{rest}" if rest else first


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
    entities_path = meta_path.with_suffix(".entities.json")
    finish = _held_finish(platform, operator, job_id, entities_path, held["report"], manifest)
    product_id = service._release(
        operator,
        job_id,
        pq.read_table(table_path),
        held["report"],
        manifest,
        JobState.WITHHELD,
        {"reviewers": list(reviewers)},
        finish=finish,
    )
    table_path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    entities_path.unlink(missing_ok=True)
    return product_id


def _unguarded(result: CheckResult) -> None:
    return None


def _labels_of(raw: pa.Table, spec) -> list[list]:
    from sandbox.guard.history import _labels

    return _labels(raw, spec)


def _held_finish(
    platform: Platform,
    operator: Principal,
    job_id: int,
    entities_path: Path,
    report: dict,
    manifest: dict,
):
    """The release transaction's part for a reviewed output: check the rows it releases
    against the history as it is now (refuse if later releases make one disclosive),
    record them, and spend the DP budget."""
    if not entities_path.exists():
        return None
    held = json.loads(entities_path.read_text())
    from policies.differencing import DiffVerdict, check_cells

    def finish(conn: Connection) -> tuple:
        table = pq.read_table(_held_paths(platform, job_id)[0])
        details: dict = {}
        lineage = held.get("lineage")
        if platform.settings["differencing.enabled"] and lineage and "entities" in held:
            open_rows = set(held["open_rows"])
            history = history_of(platform)
            keys = held["entities"]
            bitmaps = history.bitmaps(
                conn, lineage, [keys[r] if r in open_rows else None for r in range(len(keys))]
            )
            k = platform.settings["differencing.k"]
            findings = check_cells(bitmaps, history.index(conn, lineage), k)
            if any(f is not None and f.verdict is DiffVerdict.SUPPRESS for f in findings):
                raise PolicyRefusal(
                    "differencing",
                    f"job {job_id}: since it was held, other releases make one of its cells "
                    "single out a few entities together with them",
                    article="Art. 15",
                    subject=f"job:{job_id}",
                    hint="submit the job again: the output check will suppress those cells",
                )
            cells = [(r, held["labels"][r], bitmaps[r]) for r in sorted(open_rows) if bitmaps[r]]
            details["differencing"] = {
                "k": k,
                "recorded_cells": history.record(conn, lineage, job_id, cells, now_utc()),
            }
        if held.get("dp"):
            from sandbox.data.grants import grants_of

            mode = dp_budget.mode_for(
                conn,
                {
                    g.dataset: g
                    for g in grants_of(conn, operator.id)
                    if g.agreement_id == held["dp"]["agreement_id"]
                },
                held["dp"]["dataset"],
            )
            if mode is not None:
                after = dp_budget.spend(platform, conn, operator.actor, mode, job_id)
                details["dp"] = {"epsilon": mode.budget.per_query, "remaining": after.remaining}
        return table, report, manifest, details

    return finish


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
