"""Lists of workflow objects, each as its readers may see it, newest first, a page at a time.

One function, :func:`list_page`, for notices, applications, agreements, data requests and
quality tickets (issue 20, item 4). Who sees which rows follows the single reads:

* notices are public calls (Art. 10): everyone, and ``open_only`` keeps those still
  taking applications, so operators find them;
* applications (Art. 11, 12): the applicant its own, the appointed reviewers theirs, an
  authority those of the notices its jurisdiction covers, auditors all;
* agreements (Art. 13): the operator its own, a provider those whose scope names its
  datasets (it authorized them, Art. 5), an authority its jurisdiction's, auditors all;
* data requests (Art. 14): the operator its own, a provider those for its datasets, an
  authority those under its jurisdiction's agreements, auditors all;
* quality tickets (Art. 14): the reporter its own, a provider those on its datasets,
  authorities and auditors all.

Other roles are refused by name. Paging is as the inbox's: ``limit`` rows with ids below
``before``; ``next_before`` names the next page. ``status`` keeps one state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Row

from policies.errors import InputError, PermissionDenied
from policies.workflow import NoticeState, covers
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import datasets
from sandbox.workflow.base import now_or, parse_time
from sandbox.workflow.tables import (
    agreements,
    applications,
    data_requests,
    notices,
    quality_tickets,
    review_appointments,
)

MAX_PAGE = 500
KINDS = ("notices", "applications", "agreements", "requests", "tickets")


def _refuse(viewer: Principal, what: str, article: str) -> PermissionDenied:
    return PermissionDenied(
        f"a {viewer.role.value} may not list {what} ({article})", article=article
    )


def _covers(viewer: Principal, place: str) -> bool:
    return covers(viewer.jurisdiction, place)


def _my_datasets(conn: Connection, viewer: Principal) -> dict[int, str]:
    rows = conn.execute(
        select(datasets.c.id, datasets.c.name).where(datasets.c.provider_id == viewer.id)
    )
    return {r.id: r.name for r in rows}


def _notices(conn: Connection, viewer: Principal, now: datetime) -> Callable[[Row], dict | None]:
    def see(r: Row) -> dict | None:
        return {"id": r.id, "title": r.title, "domain": r.domain, "jurisdiction": r.jurisdiction,
                "datasets": json.loads(r.datasets_json), "deadline": r.deadline,
                "status": r.status, "open": r.status == NoticeState.PUBLISHED.value
                and now < parse_time(r.deadline)}  # fmt: skip

    return see


def _applications(conn: Connection, viewer: Principal, now) -> Callable[[Row], dict | None]:
    places = {
        r.id: r.jurisdiction for r in conn.execute(select(notices.c.id, notices.c.jurisdiction))
    }
    appointed = set(
        conn.execute(
            select(review_appointments.c.application_id).where(
                review_appointments.c.reviewer_id == viewer.id
            )
        ).scalars()
    )
    allowed = {
        Role.OPERATOR: lambda r: r.operator_id == viewer.id,
        Role.REVIEWER: lambda r: r.id in appointed,
        Role.AUTHORITY: lambda r: _covers(viewer, places[r.notice_id]),
        Role.AUDITOR: lambda r: True,
    }
    if viewer.role not in allowed:
        raise _refuse(viewer, "applications", "Art. 12")
    rule = allowed[viewer.role]

    def see(r: Row) -> dict | None:
        if not rule(r):
            return None
        return {"id": r.id, "notice": r.notice_id, "operator": by_id(conn, r.operator_id).name,
                "scenario": r.scenario, "status": r.status, "created_at": r.created_at}  # fmt: skip

    return see


def _agreements(conn: Connection, viewer: Principal, now) -> Callable[[Row], dict | None]:
    mine = set(_my_datasets(conn, viewer).values()) if viewer.role is Role.PROVIDER else set()
    allowed = {
        Role.OPERATOR: lambda r: r.operator_id == viewer.id,
        Role.PROVIDER: lambda r: bool(mine & set(json.loads(r.scope_json)["datasets"])),
        Role.AUTHORITY: lambda r: _covers(viewer, r.jurisdiction),
        Role.AUDITOR: lambda r: True,
    }
    if viewer.role not in allowed:
        raise _refuse(viewer, "agreements", "Art. 13")
    rule = allowed[viewer.role]

    def see(r: Row) -> dict | None:
        if not rule(r):
            return None
        return {"id": r.id, "operator": by_id(conn, r.operator_id).name,
                "jurisdiction": r.jurisdiction, "status": r.status,
                "datasets": sorted(json.loads(r.scope_json)["datasets"]),
                "from": r.valid_from, "until": r.valid_until, "disposal": r.disposal}  # fmt: skip

    return see


def _requests(conn: Connection, viewer: Principal, now) -> Callable[[Row], dict | None]:
    names = {r.id: r.name for r in conn.execute(select(datasets.c.id, datasets.c.name))}
    mine = set(_my_datasets(conn, viewer)) if viewer.role is Role.PROVIDER else set()
    places = {
        r.id: r.jurisdiction
        for r in conn.execute(select(agreements.c.id, agreements.c.jurisdiction))
    }
    allowed = {
        Role.OPERATOR: lambda r: r.operator_id == viewer.id,
        Role.PROVIDER: lambda r: r.dataset_id in mine,
        Role.AUTHORITY: lambda r: _covers(viewer, places[r.agreement_id]),
        Role.AUDITOR: lambda r: True,
    }
    if viewer.role not in allowed:
        raise _refuse(viewer, "data requests", "Art. 14")
    rule = allowed[viewer.role]

    def see(r: Row) -> dict | None:
        if not rule(r):
            return None
        return {"id": r.id, "agreement": r.agreement_id, "operator": by_id(conn, r.operator_id).name,
                "dataset": names[r.dataset_id], "purpose": r.purpose, "status": r.status,
                "reason": r.reason, "grant": r.grant_id}  # fmt: skip

    return see


def _tickets(conn: Connection, viewer: Principal, now) -> Callable[[Row], dict | None]:
    names = {r.id: r.name for r in conn.execute(select(datasets.c.id, datasets.c.name))}
    mine = set(_my_datasets(conn, viewer)) if viewer.role is Role.PROVIDER else set()
    allowed = {
        Role.OPERATOR: lambda r: r.reporter_id == viewer.id,
        Role.PROVIDER: lambda r: r.dataset_id in mine,
        Role.AUTHORITY: lambda r: True,
        Role.AUDITOR: lambda r: True,
    }
    if viewer.role not in allowed:
        raise _refuse(viewer, "quality tickets", "Art. 14")
    rule = allowed[viewer.role]

    def see(r: Row) -> dict | None:
        if not rule(r):
            return None
        return {"id": r.id, "dataset": names[r.dataset_id], "text": r.text, "status": r.status,
                "answer": r.answer, "fixed_version": r.fixed_version}  # fmt: skip

    return see


VIEWS: dict[str, tuple[Table, Callable]] = {
    "notices": (notices, _notices),
    "applications": (applications, _applications),
    "agreements": (agreements, _agreements),
    "requests": (data_requests, _requests),
    "tickets": (quality_tickets, _tickets),
}


def list_page(
    platform: Platform,
    viewer: Principal,
    kind: str,
    *,
    limit: int = 50,
    before: int | None = None,
    status: str | None = None,
    open_only: bool = False,
    now: datetime | None = None,
) -> dict:
    """One page of ``kind`` as ``viewer`` may see it, newest first: items, total,
    next_before (None on the last page)."""
    if kind not in VIEWS:
        raise InputError(f"unknown list '{kind}'; one of: {', '.join(KINDS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"--limit must be between 1 and {MAX_PAGE}, not {limit}")
    if before is not None and before < 1:
        raise InputError(f"--before must be an id (1 or more), not {before}")
    table, view = VIEWS[kind]
    with platform.store.read() as conn:
        see = view(conn, viewer, now_or(now))
        seen = []
        for row in conn.execute(select(table).order_by(table.c.id.desc())).all():
            item = see(row)
            if item is None or (status and item["status"] != status):
                continue
            if open_only and not item.get("open", False):
                continue
            seen.append(item)
    after = [i for i in seen if before is None or i["id"] < before]
    page = after[:limit]
    more = len(after) > limit
    return {"items": page, "total": len(seen), "next_before": page[-1]["id"] if more else None}
