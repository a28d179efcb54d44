"""The history of the audit across releases: one hypercube per lineage (issue 17, item 3).

The interval audit of one output (:func:`policies.disclosure.tables.check_output`) cannot
see that a county total released today, less the industry cells of that county released
last week, is the cell last week's table suppressed by dominance. This module keeps every
cell of every additive measure of a released table-mode output over declared code lists
(:func:`jobs.grid.lineage_keys`) in the store (``lineage_cells``): the lineage (dataset
name) and snapshot (the version's sha256: cells of one snapshot are sums of the same
rows), the measure key (``sum(capital)``), the WHERE key, the dimensions, the cell's codes
(TOTAL for a rolled-up key), its value and whether it was released, suppressed by a
primary rule (protected, with the interval it must keep) or suppressed as a complement.

A job is checked with the earlier releases of its lineage, measure and WHERE
(:func:`checked`, before the release and the review) and again inside the release
transaction when the history has grown since (:func:`guard`: the store serialises
writers, so two jobs cannot both pass against a history that lacks the other); its cells
are recorded in that transaction. A withheld output's cells wait as ``pending`` rows
(:func:`hold`) and become history when the checkers release it (:func:`held`, which
refuses the release if releases made since would let it narrow a protected cell).
Refused and failed jobs record nothing. Not covered (the report says so): the DP mode
(noisy values), ``round_10_5`` (rounded counts), joins, keys without code lists, and
releases of other snapshots or other WHERE texts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from jobs.grid import LineageKeys, lineage_keys
from policies.disclosure import CheckResult
from policies.disclosure import lineage as lineage_rules
from policies.disclosure.lineage import RELEASED, Lineage, LineageCell, LineageOutcome, Release
from policies.disclosure.tables import audit_release, final_cells, lineage_outcome
from policies.domains import Codes, declared_values
from policies.errors import PolicyRefusal
from sandbox.guard.tables import lineage_cells

ENABLED = True  # the tests turn it off to show the attack it stops


def keys_of(prepared: Any) -> LineageKeys | None:
    """The lineage keys of a prepared job the audit across releases applies to, or None:
    not an SQL aggregate, the DP mode (noisy values), or no lineage keys (joins, a key
    without a declared code list, no additive measure)."""
    plan = prepared.plan
    if not ENABLED or plan.kind != "sql_aggregate" or prepared.dp is not None:
        return None
    if prepared.lineage is None or prepared.lineage not in prepared.versions:
        return None
    keys = lineage_keys(plan.payload, plan.grid)
    if keys is None or keys.dataset != prepared.lineage or not keys.measures:
        return None
    return keys


def _snapshot(prepared: Any, keys: LineageKeys) -> str:
    """The rows the cells sum: the version's sha256, and the county of a county
    agreement's slice (its cells are sums of other rows than the whole's)."""
    version = prepared.versions[keys.dataset]
    county = getattr(version, "county", None)
    return f"{version.sha256}@{county}" if county else str(version.sha256)


def _where(keys: LineageKeys, snapshot: str, measures: list[str]) -> list[Any]:
    c = lineage_cells.c
    return [
        c.dataset == keys.dataset,
        c.snapshot == snapshot,
        c.where_key == keys.where,
        c.measure.in_(measures),
    ]


def last_id(conn: Connection, prepared: Any, keys: LineageKeys) -> list[int]:
    """How many history rows the job's lineage, measures and WHERE have, and the newest
    one's id: a held output's rows join the history with their old ids, so both."""
    measures = sorted(set(keys.measures.values()))
    c = lineage_cells.c
    count, newest = conn.execute(
        select(func.count(), func.max(c.id)).where(
            *_where(keys, _snapshot(prepared, keys), measures), c.pending == 0
        )
    ).one()
    return [int(count or 0), int(newest or 0)]


def gather(
    conn: Connection, prepared: Any, keys: LineageKeys, *, job_id: int | None = None
) -> Lineage:
    """The earlier releases of the job's lineage, snapshot, measures and WHERE, as the
    history ``conn`` sees (released jobs only; never ``job_id``'s own rows)."""
    version = prepared.versions[keys.dataset]
    codes = {
        column: tuple(declared_values(domain))
        for column, domain in version.classification.domains.items()
        if isinstance(domain, Codes)
    }
    measures = sorted(set(keys.measures.values()))
    c = lineage_cells.c
    query = (
        select(c.job_id, c.measure, c.dimensions, c.codes, c.value, c.state, c.need_down,
               c.need_up, c.bounded)
        .where(*_where(keys, _snapshot(prepared, keys), measures), c.pending == 0)
        .order_by(c.id)
    )  # fmt: skip
    if job_id is not None:
        query = query.where(c.job_id != job_id)
    grouped: dict[tuple[str, int], tuple[tuple[str, ...], list[LineageCell]]] = {}
    for row in conn.execute(query):
        dims = tuple(json.loads(row.dimensions))
        cell = LineageCell(
            tuple(json.loads(row.codes)),
            float(row.value),
            row.state,
            float(row.need_down),
            float(row.need_up),
            bool(row.bounded),
        )
        grouped.setdefault((row.measure, row.job_id), (dims, []))[1].append(cell)
    earlier: dict[str, list[Release]] = {}
    for (measure, job), (dims, cells) in grouped.items():
        earlier.setdefault(measure, []).append(Release(job, dims, tuple(cells)))
    # the limit read now (not at import): a test may lower it
    return Lineage(keys.dimensions, keys.measures, codes, earlier, lineage_rules.LINEAGE_LIMIT)


def checked(platform: Any, kind: Any, prepared: Any, raw: Any, result: CheckResult) -> CheckResult:
    """The output check again with the lineage's earlier releases (``result`` when the
    audit across releases does not apply). Read outside the release transaction: the
    release checks again inside it (:func:`guard`)."""
    keys = keys_of(prepared)
    if keys is None:
        return result
    with platform.store.read() as conn:
        lineage = gather(conn, prepared, keys)
        seen = last_id(conn, prepared, keys)
    if not any(lineage.earlier.values()):  # nothing earlier: the same verdicts, no audit
        spec = prepared.plan.payload.spec
        outcome = lineage_outcome(result, raw, spec, lineage)
        outcome.note["history_id"] = seen
        return replace(result, lineage=outcome)
    again: CheckResult = kind.check(prepared.plan, raw, prepared.params, lineage=lineage)
    if again.lineage is not None:
        again.lineage.note["history_id"] = seen
    return again


def guard(conn: Connection, kind: Any, prepared: Any, raw: Any, result: CheckResult) -> CheckResult:
    """Inside the release transaction: the check again if the history grew since
    ``result`` was made (:func:`checked`), else ``result``."""
    keys = keys_of(prepared)
    if keys is None or result.lineage is None:
        return result
    if last_id(conn, prepared, keys) == result.lineage.note.get("history_id"):
        return result
    lineage = gather(conn, prepared, keys)
    again: CheckResult = kind.check(prepared.plan, raw, prepared.params, lineage=lineage)
    if again.lineage is not None:
        again.lineage.note["history_id"] = last_id(conn, prepared, keys)
    return again


def record(
    conn: Connection,
    prepared: Any,
    job_id: int,
    outcome: LineageOutcome | None,
    final: CheckResult,
    now: str,
    *,
    pending: bool = False,
) -> int:
    """Store the output's cells with the states of ``final`` (the released result);
    ``pending`` for a withheld output. Returns how many rows were written."""
    keys = keys_of(prepared)
    if keys is None or outcome is None or not outcome.cells:
        return 0
    spec = prepared.plan.payload.spec
    snapshot = _snapshot(prepared, keys)
    dims = json.dumps(list(outcome.dimensions))
    rows = [
        {
            "dataset": keys.dataset,
            "snapshot": snapshot,
            "job_id": job_id,
            "measure": measure,
            "where_key": keys.where,
            "dimensions": dims,
            "codes": json.dumps(list(cell.codes)),
            "value": cell.value,
            "state": cell.state,
            "need_down": cell.down,
            "need_up": cell.up,
            "bounded": int(cell.bounded),
            "pending": int(pending),
            "created_at": now,
        }
        for measure, cells in final_cells(outcome, final, spec).items()
        for cell in cells
    ]
    if rows and any(r["state"] == RELEASED for r in rows):
        conn.execute(lineage_cells.insert(), rows)
        return len(rows)
    return 0


def note_of(outcome: LineageOutcome | None) -> dict[str, Any] | None:
    """What the checkers' report says of the audit across releases."""
    if outcome is None:
        return None
    note = {k: v for k, v in outcome.note.items() if k != "history_id"}
    return {**note, "summary": outcome.summary}


def held(conn: Connection, job_id: int) -> dict[str, Any] | None:
    """Inside the release transaction of a reviewed output: its pending cells audited
    against the history as it is now, then made history. Refuses (rule ``audit``) when
    releases made since it was held would let it narrow a protected cell."""
    c = lineage_cells.c
    rows = conn.execute(
        select(lineage_cells).where(c.job_id == job_id, c.pending == 1).order_by(c.id)
    ).all()
    if not rows:
        return None
    first = rows[0]
    measures: dict[str, list[Any]] = {}
    for row in rows:
        measures.setdefault(row.measure, []).append(row)
    failed = []
    for measure, cells in measures.items():
        dims = tuple(json.loads(first.dimensions))
        earlier = conn.execute(
            select(lineage_cells).where(
                c.dataset == first.dataset,
                c.snapshot == first.snapshot,
                c.where_key == first.where_key,
                c.measure == measure,
                c.pending == 0,
            )
        ).all()
        by_job: dict[int, tuple[tuple[str, ...], list[LineageCell]]] = {}
        for row in earlier:
            by_job.setdefault(row.job_id, (tuple(json.loads(row.dimensions)), []))[1].append(
                _cell(row)
            )
        releases = [Release(j, d, tuple(cs)) for j, (d, cs) in by_job.items()]
        # every declared code is a row of a declared grid: the cells hold the code lists
        if releases and not audit_release(dims, [_cell(r) for r in cells], releases, {}):
            failed.append(measure)
    if failed:
        raise PolicyRefusal(
            "audit",
            f"job {job_id}: since it was held, other releases of the same measures let its "
            "released cells narrow a suppressed cell",
            article="Art. 15",
            subject=f"job:{job_id}",
            hint="submit the job again: the output check will suppress those cells",
        )
    conn.execute(update(lineage_cells).where(c.job_id == job_id).values(pending=0))
    return {"recorded_cells": len(rows), "measures": sorted(measures)}


def _cell(row: Any) -> LineageCell:
    return LineageCell(
        tuple(json.loads(row.codes)),
        float(row.value),
        row.state,
        float(row.need_down),
        float(row.need_up),
        bool(row.bounded),
    )
