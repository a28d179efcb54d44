"""What an output checker votes on: the held output, cell by cell (issue 21).

The airlock (:mod:`.airlock`) asks two checkers to approve or reject an output the
platform holds back; until now they voted on a table they could not see. Here the
appointed checkers, auditors and an authority whose jurisdiction covers the job read
the held output as the release would carry it (suppressed cells empty), every cell's
verdict with the rules that fired and why, the SQL, the datasets and versions it read,
and the rules' parameters; the author's earlier releases on the same datasets (what left
before, for the differencing a checker may spot); with the review's state, whose votes stay sealed until both
are in (:func:`.airlock.show`). Never the author: neither its name nor its
organisation is shown, so a checker judges the table, not who asked. The operator
never reads this (issue 17, :mod:`sandbox.run.views`: per-cell reasons are for
checkers and auditors only); to it a held output stays "withheld for review".

:func:`held_outputs` lists what waits for a checker (the held outputs it is appointed
to and has not voted on yet) and, for an authority or an auditor, every held output it
may see.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import NotFound, PermissionDenied
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.core.store import jobs, products
from sandbox.data.release import MANIFEST
from sandbox.registry.jurisdiction import job_place, require_covers
from sandbox.registry.tables import output_reviews, output_votes
from sandbox.run.settle import held_paths
from sandbox.workflow import airlock

ARTICLE = "Art. 15"
EARLIER = 20  # the author's earlier releases on the same datasets shown to a checker


def may_review(conn: Connection, viewer: Principal, job: Row) -> None:
    """Appointed checkers, auditors and a covering authority read a held output; the
    operator, even the author, is told there is none (no oracle)."""
    if viewer.role is Role.AUDITOR or viewer.id in airlock.checkers_of(conn, job.id):
        if viewer.id != job.operator_id:
            return
    elif viewer.role is Role.AUTHORITY:
        require_covers(viewer, job_place(conn, job.id), "read held outputs", ARTICLE)
        return
    raise NotFound(f"no held output of job {job.id} that you may review")


def _cells(report: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {
        (int(c["row"]), str(c["column"])): {
            "verdict": c.get("verdict", "pass"),
            "rules": list(c.get("rules") or []),
            "reason": c.get("summary", ""),
        }
        for c in report.get("cells") or []
    }


def _rows(table, report: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each row as its cells: value, verdict, rules and reason (a cell the check let pass
    has verdict ``pass`` and no rules)."""
    flags = _cells(report)
    passed = {"verdict": "pass", "rules": [], "reason": ""}
    out = []
    for r, record in enumerate(table.to_pylist()):
        out.append(
            [
                {"column": name, "value": value, **flags.get((r, name), passed)}
                for name, value in record.items()
            ]
        )
    return out


def held_output(platform: Platform, viewer: Principal, job_id: int) -> dict[str, Any]:
    """The held output of ``job_id`` as its checkers review it (see the module's doc)."""
    with platform.store.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no held output of job {job_id} that you may review")
        may_review(conn, viewer, row)
    review = airlock.show(platform, viewer, job_id)
    table_path, meta_path = held_paths(platform, job_id)
    if row.status != "withheld" or not meta_path.exists() or not table_path.exists():
        raise NotFound(
            f"job {job_id} holds no output for review (it is {row.status}"
            + (f", released as {row.product_id})" if row.product_id else ")")
        )
    held = json.loads(meta_path.read_text())
    report, manifest = held["report"], held["manifest"]
    table = pq.read_table(table_path)
    job = manifest.get("job") or {}
    return {
        "job": job_id,
        "kind": job.get("kind"),
        "sql": job.get("sql"),
        "datasets": [
            {k: d.get(k) for k in ("name", "version", "sha256", "rows")}
            for d in manifest.get("datasets") or []
        ],
        "rules": report.get("params") or {},
        "verdict": report.get("verdict"),
        "summary": report.get("summary", ""),
        "counts": report.get("counts") or {},
        "why": _why(platform, job_id),
        "earlier": earlier_releases(platform, row),
        "columns": list(table.column_names),
        "rows": _rows(table, report),
        "review": review,
    }


def _datasets(inputs_json: str | None) -> set[str]:
    return {str(i.get("dataset")) for i in json.loads(inputs_json or "[]")}


def earlier_releases(platform: Platform, job: Row, most: int = EARLIER) -> list[dict[str, Any]]:
    """The author's releases before this job on any of the same datasets, newest first:
    job, product, time and the SQL as it ran (from the signed manifest, never the text the
    operator typed, whose comments might name it). A checker reads them to see what this
    output adds to what already left (differencing), without learning who the author is."""
    wanted = _datasets(job.inputs_json)
    with platform.store.read() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.inputs_json, products.c.id.label("product"), products.c.path,
                   products.c.created_at)
            .join(products, products.c.job_id == jobs.c.id)
            .where(jobs.c.operator_id == job.operator_id, jobs.c.status == "released",
                   jobs.c.id < job.id)
            .order_by(jobs.c.id.desc())
        ).all()  # fmt: skip
    out = []
    for r in rows:
        if not wanted & _datasets(r.inputs_json):
            continue
        manifest_path = platform.home / r.path / MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        sql = (manifest.get("job") or {}).get("sql")
        out.append({"job": r.id, "product": r.product, "created_at": r.created_at, "sql": sql})
        if len(out) >= most:
            break
    return out


def _why(platform: Platform, job_id: int) -> str:
    with platform.store.read() as conn:
        text = conn.execute(select(jobs.c.report_json).where(jobs.c.id == job_id)).scalar()
    return str((json.loads(text) if text else {}).get("withheld_because", ""))


def held_outputs(platform: Platform, viewer: Principal) -> list[dict[str, Any]]:
    """The held outputs ``viewer`` may review, oldest first, each with its review's state,
    how many votes are in, and whether ``viewer`` voted. A checker sees those it is
    appointed to; an authority those of its jurisdiction; an auditor all."""
    if viewer.role not in (Role.REVIEWER, Role.AUTHORITY, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} does not check outputs ({ARTICLE})", article=ARTICLE
        )
    out = []
    with platform.store.read() as conn:
        held = conn.execute(
            select(jobs).where(jobs.c.status == "withheld").order_by(jobs.c.id)
        ).all()
        for job in held:
            try:
                may_review(conn, viewer, job)
            except (NotFound, PermissionDenied):
                continue
            out.append(_summary(conn, viewer, job))
    return out


def _summary(conn: Connection, viewer: Principal, job: Row) -> dict[str, Any]:
    review = conn.execute(select(output_reviews).where(output_reviews.c.job_id == job.id)).first()
    voters: list[int] = []
    if review is not None:
        voters = list(
            conn.execute(
                select(output_votes.c.checker_id).where(output_votes.c.review_id == review.id)
            ).scalars()
        )
    return {
        "job": job.id,
        "kind": job.kind,
        "created_at": job.created_at,
        "status": review.status if review is not None else "pending",
        "votes_in": len(voters),
        "voted": viewer.id in voters,
        "appointed": viewer.id in airlock.checkers_of(conn, job.id),
    }
