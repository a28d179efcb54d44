"""After a job ran and its output was checked: release it as a signed product, or
withhold it for the output review (its checked table and evidence kept under
``held/``), and release a held output once two checkers approved it."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyroaring import BitMap
from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.disclosure import CheckResult, DisclosureParams
from policies.errors import Conflict, PolicyRefusal
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, by_id
from sandbox.core.store import jobs
from sandbox.data.release import place_product, write_files
from sandbox.guard import dp_budget, lineage_audit
from sandbox.guard.evidence import entity_bitmaps
from sandbox.guard.history import cell_labels, history_of
from sandbox.run.admission import Prepared
from sandbox.run.jobstate import (
    JobState,
    state_of,
    transition,
)
from sandbox.run.views import released_manifest, released_report


class Withhold(Exception):
    """Raised inside a release transaction when the differencing check leaves nothing to
    release: the transaction rolls back and the output is withheld instead."""

    def __init__(self, result: CheckResult):
        super().__init__("withhold")
        self.result = result


def held_paths(platform: Platform, job_id: int) -> tuple[Path, Path]:
    folder = platform.home / "held"
    return folder / f"job-{job_id:06d}.parquet", folder / f"job-{job_id:06d}.json"


def withheld_summary(summary: str, why: str) -> str:
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
    table_path, meta_path = held_paths(platform, job_id)
    if not table_path.exists() or not meta_path.exists():
        raise Conflict(f"job {job_id} has no held output to release")
    held = json.loads(meta_path.read_text())
    with platform.store.read() as conn:
        row = conn.execute(select(jobs.c.operator_id).where(jobs.c.id == job_id)).first()
        if row is None:
            raise Conflict(f"no job {job_id}")
        operator = by_id(conn, row.operator_id)
    manifest = {**held["manifest"], "review": {"approved_by": list(reviewers)}}
    entities_path = meta_path.with_suffix(".entities.json")
    finish = held_finish(platform, operator, job_id, entities_path, held["report"], manifest)
    product_id = release(
        platform,
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


def unguarded(result: CheckResult) -> None:
    return None


def held_finish(
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
        table = pq.read_table(held_paths(platform, job_id)[0])
        details: dict = {}
        # --- lineage audit (issue 17, item 3): the held cells against the history now ---
        audited = lineage_audit.held(conn, job_id)
        if audited is not None:
            details["lineage_audit"] = audited
        # ---
        lineage = held.get("lineage")
        if platform.settings.differencing.enabled and lineage and "bitmaps" in held:
            open_rows = set(held["open_rows"])
            history = history_of(platform)
            bitmaps = [
                BitMap.deserialize(base64.b64decode(b))
                if b is not None and r in open_rows
                else None
                for r, b in enumerate(held["bitmaps"])
            ]
            k = platform.settings.differencing.k
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
                held["dp"].get("population"),
            )
            if mode is not None:  # spent when the job was queued (a refund would be an oracle)
                details["dp"] = dp_budget.charged(platform, conn, operator.actor, mode, job_id)
        return table, report, manifest, details

    return finish


def manifest_of(
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
                **({"county": versions[t].county} if versions[t].county else {}),
            }
            for t in plan.tables
        ],
        "grants": sorted({g.id for g in prepared.used.values()}),
        "agreements": sorted(
            {g.agreement_id for g in prepared.used.values() if getattr(g, "agreement_id", None)}
        ),
        "rules": report["params"],
        "measures": measures_of(prepared),
        "verdict": result.verdict.name.lower(),
        "check": {"counts": report["counts"], "summary": report["summary"]},
    }


def measures_of(prepared: Prepared) -> dict[str, str | None]:
    """The output's aggregate columns and their functions: the product's flag columns."""
    spec = getattr(prepared.plan.payload, "spec", None)
    return {} if spec is None else {c.name: c.function for _, c in spec.aggregates()}


def report_of(result: CheckResult, params: DisclosureParams) -> dict:
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


def hold_entities(
    platform: Platform, job_id: int, prepared: Prepared, raw: pa.Table, result: CheckResult
) -> None:
    """Keep what the release of a withheld output needs: contributors, DP mode."""
    from jobs.sql_evidence import ENTITIES
    from policies.differencing import released_rows

    _table, meta_path = held_paths(platform, job_id)
    if not meta_path.exists():
        return
    held: dict[str, Any] = {"lineage": prepared.lineage}
    if ENTITIES in raw.column_names and prepared.lineage:
        held["labels"] = cell_labels(raw, prepared.plan.payload.spec)
        held["open_rows"] = released_rows(result, prepared.plan.payload.spec, raw.num_rows)
        # the contributors as bitmaps of entity numbers: no raw key is written to disk
        held["bitmaps"] = [
            None if b is None else base64.b64encode(b.serialize()).decode()
            for b in entity_bitmaps(raw)
        ]
    if prepared.dp is not None:
        held["dp"] = {
            "agreement_id": prepared.dp.agreement_id,
            "dataset": prepared.dp.dataset,
            "population": prepared.dp.population,
        }
    meta_path.with_suffix(".entities.json").write_text(json.dumps(held, default=str))


def release(
    platform: Platform,
    operator: Principal,
    job_id: int,
    table: pa.Table | None,
    report: dict,
    manifest: dict,
    expected: JobState,
    details: Mapping[str, Any] | None = None,
    finish: Callable[[Connection], tuple] | None = None,
) -> str:
    """Release ``table`` as a product; with ``finish``, what it answers inside the release
    transaction is released, and ``table``, ``report`` and ``manifest`` are what is expected
    (``table`` None: nothing is). The product's files are written and signed before the
    store's write lock is taken, from what is expected, and again inside the transaction
    only when ``finish`` answers something else."""
    product_id = f"prod-{job_id:06d}"
    ready = None if table is None else _written(platform, product_id, table, report, manifest)
    target = None
    try:
        with platform.store.transaction() as conn:
            if state_of(conn, job_id) is not expected:
                raise Conflict(f"job {job_id} is no longer {expected.value}")
            if finish is not None:
                table, report, manifest, more = finish(conn)
                details = {**(details or {}), **more}
            shown = released_report(report)  # the product leaves: the operator's view
            fields = released_manifest(manifest, shown)
            if ready is None or not ready.matches(table, shown, fields):
                if ready is not None:
                    ready.discard()
                ready = write_files(platform, product_id, table, shown, fields)
            target = place_product(platform, conn, ready, job_id=job_id, operator=operator)
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
        if ready is not None:
            ready.discard()
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return product_id


def _written(platform: Platform, product_id: str, table: pa.Table, report: dict, manifest: dict):
    """The product's files as the operator's view of ``report`` makes them (unplaced)."""
    shown = released_report(report)
    return write_files(platform, product_id, table, shown, released_manifest(manifest, shown))


def withhold(
    platform: Platform,
    operator: Principal,
    job_id: int,
    result: CheckResult,
    report: dict,
    manifest: dict,
    *,
    review: list[str],
) -> None:
    # The checked table stays inside the platform, for the output review.
    table_path, meta_path = held_paths(platform, job_id)
    table_path.parent.mkdir(exist_ok=True)
    pq.write_table(result.released, table_path)
    meta_path.write_text(json.dumps({"report": report, "manifest": manifest}, default=str))
    # For the checkers and auditors: the operator reads only "withheld for review".
    why = "; ".join(review) if review else "the output check holds cells for review"
    shown = {**report, "summary": withheld_summary(report["summary"], why)}
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
