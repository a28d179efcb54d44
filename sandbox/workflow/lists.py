"""Lists of workflow objects, each as its readers may see it, newest first, a page at a time.

One function, :func:`list_page`, for notices, applications, agreements, data requests,
quality tickets, reviews, evaluations, incidents and consumers' incident plans (issue 20,
item 4). Who sees which
rows follows the single reads:

* notices are public calls (Art. 10): everyone, and ``open_only`` keeps those still
  taking applications, so operators find them;
* applications (Art. 11, 12): the applicant its own, the appointed reviewers theirs, an
  authority those of the notices its jurisdiction covers, auditors all;
* agreements (Art. 13): the operator its own, a provider those whose scope names its
  datasets (it authorized them, Art. 5), an authority its jurisdiction's, auditors all;
* data requests (Art. 14): the operator its own, a provider those for its datasets, an
  authority those under its jurisdiction's agreements, auditors all;
* quality tickets (Art. 14): the reporter its own, a provider those on its datasets,
  authorities and auditors all;
* reviews (Art. 12): a reviewer its own appointments, an authority those of the
  applications its jurisdiction covers, auditors all (an applicant learns its combined
  scores in its inbox, not each reviewer's);
* evaluations (Art. 23, 24): the operator those of its agreements, an authority its
  jurisdiction's, auditors all;
* incidents (Art. 21): the operator those about it, a consumer those it reported
  (:mod:`sandbox.workflow.consumers`), a provider those about operators
  holding a grant on its data (it is told of them, Art. 5), an authority those about
  operators it reaches (a county authority: operators holding an agreement of its
  county, the reach of :func:`sandbox.workflow.supervision.report_incident`), auditors all;
* consumers' incident-response plans (Art. 21): the consumer its own filings,
  authorities and auditors all (the plans concern no county: a consumer is the city's).

Each kind is one row of :data:`KINDS`: its table, and for each role that may list it
the SQL condition of the rows that role sees (a county authority's are the ids of its
county, :func:`sandbox.registry.jurisdiction.scope_of`); other roles are refused by
name. The store filters, counts and pages (``limit`` rows with ids below ``before``;
``next_before`` names the next page), so a page reads ``limit`` rows, not the table.
``status`` keeps one state (incidents have none: they are facts, not a process).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import ColumnElement, Table, false, func, select, true
from sqlalchemy.engine import Connection, Row

from policies.errors import InputError, PermissionDenied
from policies.workflow import NoticeState
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import datasets, grants
from sandbox.registry.base import now_or, parse_time
from sandbox.registry.jurisdiction import CountyScope, scope_of
from sandbox.registry.tables import (
    agreements,
    applications,
    consumer_plans,
    data_requests,
    evaluations,
    incident_products,
    incidents,
    notices,
    quality_tickets,
    review_appointments,
)

MAX_PAGE = 500

Where = Callable[[Connection, Principal], ColumnElement[bool]]


@dataclass
class _Seen:
    """What a page's rows are shown with: the store and the time asked about."""

    conn: Connection
    now: datetime

    @cached_property
    def dataset_names(self) -> dict[int, str]:
        return {r.id: r.name for r in self.conn.execute(select(datasets.c.id, datasets.c.name))}

    def name(self, principal_id: int) -> str:
        return by_id(self.conn, principal_id).name

    @cached_property
    def incident_products(self) -> dict[int, str]:
        rows = self.conn.execute(select(incident_products))
        return {r.incident_id: r.product for r in rows}


@dataclass(frozen=True)
class Kind:
    """One list: its table, who may list it (``None``: everyone) and which rows each
    reader sees, and how a row is shown."""

    table: Table
    what: str
    article: str
    readers: Mapping[Role, Where] | None
    show: Callable[[Row, _Seen], dict]


def _all(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
    return true()


def _own(column: ColumnElement) -> Where:
    return lambda conn, viewer: column == viewer.id


def _county(table: Table, ids: Callable[[CountyScope], set]) -> Where:
    """An authority's rows: every row for the city, its county's for a county (Art. 5)."""

    def where(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
        scope = scope_of(conn, viewer)
        return true() if scope is None else table.c.id.in_(ids(scope))

    return where


def _on_my_datasets(column: ColumnElement) -> Where:
    return lambda conn, viewer: column.in_(
        select(datasets.c.id).where(datasets.c.provider_id == viewer.id)
    )


def _appointed(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
    return applications.c.id.in_(
        select(review_appointments.c.application_id).where(
            review_appointments.c.reviewer_id == viewer.id
        )
    )


def _naming_my_datasets(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
    """The agreements whose scope (a JSON field) names one of the provider's datasets."""
    mine = set(
        conn.execute(select(datasets.c.name).where(datasets.c.provider_id == viewer.id)).scalars()
    )
    rows = conn.execute(select(agreements.c.id, agreements.c.scope_json))
    return agreements.c.id.in_(
        [r.id for r in rows if mine & set(json.loads(r.scope_json)["datasets"])]
    )


def _of_my_agreements(column: ColumnElement) -> Where:
    """The rows made under one of the viewer's (an operator's) agreements."""
    return lambda conn, viewer: column.in_(
        select(agreements.c.id).where(agreements.c.operator_id == viewer.id)
    )


def _about_my_users(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
    """The incidents of operators holding a grant on one of the provider's datasets: the
    providers :func:`sandbox.workflow.supervision.report_incident` tells (Art. 5, 21)."""
    return incidents.c.operator_id.in_(
        select(grants.c.operator_id)
        .join(datasets, datasets.c.id == grants.c.dataset_id)
        .where(datasets.c.provider_id == viewer.id)
    )


def _incidents_in_reach(conn: Connection, viewer: Principal) -> ColumnElement[bool]:
    """An authority's incidents: every one for the city; for a county, those about the
    operators holding an agreement of the county (Art. 5)."""
    scope = scope_of(conn, viewer)
    if scope is None:
        return true()
    return incidents.c.operator_id.in_(
        select(agreements.c.operator_id).where(agreements.c.id.in_(scope.agreements))
    )


def _open(row: Row, now: datetime) -> bool:
    return row.status == NoticeState.PUBLISHED.value and now < parse_time(row.deadline)


def _open_notices(conn: Connection, now: datetime) -> ColumnElement[bool]:
    """The notices still taking applications (the deadline is a text of any ISO form)."""
    rows = conn.execute(
        select(notices.c.id, notices.c.status, notices.c.deadline).where(
            notices.c.status == NoticeState.PUBLISHED.value
        )
    )
    return notices.c.id.in_([r.id for r in rows if _open(r, now)])


KINDS: dict[str, Kind] = {
    "notices": Kind(notices, "notices", "Art. 10", None, lambda r, s: {
        "id": r.id, "title": r.title, "domain": r.domain, "jurisdiction": r.jurisdiction,
        "datasets": json.loads(r.datasets_json), "deadline": r.deadline, "status": r.status,
        "open": _open(r, s.now)}),
    "applications": Kind(applications, "applications", "Art. 12", {
        Role.OPERATOR: _own(applications.c.operator_id),
        Role.REVIEWER: _appointed,
        Role.AUTHORITY: _county(applications, lambda scope: scope.applications),
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "notice": r.notice_id, "operator": s.name(r.operator_id),
        "scenario": r.scenario, "status": r.status, "created_at": r.created_at}),
    "agreements": Kind(agreements, "agreements", "Art. 13", {
        Role.OPERATOR: _own(agreements.c.operator_id),
        Role.PROVIDER: _naming_my_datasets,
        Role.AUTHORITY: _county(agreements, lambda scope: scope.agreements),
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "operator": s.name(r.operator_id), "jurisdiction": r.jurisdiction,
        "status": r.status, "datasets": sorted(json.loads(r.scope_json)["datasets"]),
        "from": r.valid_from, "until": r.valid_until, "disposal": r.disposal}),
    "requests": Kind(data_requests, "data requests", "Art. 14", {
        Role.OPERATOR: _own(data_requests.c.operator_id),
        Role.PROVIDER: _on_my_datasets(data_requests.c.dataset_id),
        Role.AUTHORITY: _county(data_requests, lambda scope: scope.data_requests),
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "agreement": r.agreement_id, "operator": s.name(r.operator_id),
        "dataset": s.dataset_names[r.dataset_id], "purpose": r.purpose, "status": r.status,
        "reason": r.reason, "grant": r.grant_id}),
    "tickets": Kind(quality_tickets, "quality tickets", "Art. 14", {
        Role.OPERATOR: _own(quality_tickets.c.reporter_id),
        Role.PROVIDER: _on_my_datasets(quality_tickets.c.dataset_id),
        Role.AUTHORITY: _all,
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "dataset": s.dataset_names[r.dataset_id], "text": r.text,
        "status": r.status, "answer": r.answer, "fixed_version": r.fixed_version}),
    "reviews": Kind(review_appointments, "reviews", "Art. 12", {
        Role.REVIEWER: _own(review_appointments.c.reviewer_id),
        Role.AUTHORITY: _county(review_appointments, lambda scope: scope.reviews),
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "application": r.application_id, "reviewer": s.name(r.reviewer_id),
        "status": r.status, "scores": json.loads(r.scores_json) if r.scores_json else None,
        "created_at": r.created_at}),
    "evaluations": Kind(evaluations, "evaluations", "Art. 23", {
        Role.OPERATOR: _of_my_agreements(evaluations.c.agreement_id),
        Role.AUTHORITY: _county(evaluations, lambda scope: scope.evaluations),
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "agreement": r.agreement_id, "authority": s.name(r.authority_id),
        "status": r.status, "notes": r.notes, "deadline": r.deadline,
        "figures": json.loads(r.figures_json), "created_at": r.created_at}),
    "incidents": Kind(incidents, "incidents", "Art. 21", {
        Role.OPERATOR: _own(incidents.c.operator_id),
        Role.CONSUMER: _own(incidents.c.reported_by),
        Role.PROVIDER: _about_my_users,
        Role.AUTHORITY: _incidents_in_reach,
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "operator": s.name(r.operator_id), "reported_by": s.name(r.reported_by),
        "kind": r.kind, "description": r.description,
        "suspended": json.loads(r.suspended_json)["agreements"],
        "product": s.incident_products.get(r.id), "created_at": r.created_at}),
    "plans": Kind(consumer_plans, "consumers' incident plans", "Art. 21", {
        Role.CONSUMER: _own(consumer_plans.c.consumer_id),
        Role.AUTHORITY: _all,
        Role.AUDITOR: _all,
    }, lambda r, s: {
        "id": r.id, "consumer": s.name(r.consumer_id), "plan": r.plan,
        "created_at": r.created_at}),
}  # fmt: skip


def _readable(conn: Connection, viewer: Principal, kind: Kind) -> ColumnElement[bool]:
    """The rows of ``kind`` the viewer may list, or the refusal naming who may."""
    if kind.readers is None:
        return true()
    if viewer.role not in kind.readers:
        who = ", ".join(role.value for role in kind.readers)
        raise PermissionDenied(
            f"a {viewer.role.value} may not list {kind.what} ({kind.article}); "
            f"they are listed by: {who}",
            article=kind.article,
        )
    return kind.readers[viewer.role](conn, viewer)


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
    if kind not in KINDS:
        raise InputError(f"unknown list '{kind}'; one of: {', '.join(KINDS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"--limit must be between 1 and {MAX_PAGE}, not {limit}")
    if before is not None and before < 1:
        raise InputError(f"--before must be an id (1 or more), not {before}")
    listed = KINDS[kind]
    table = listed.table
    with platform.store.read() as conn:
        seen = _Seen(conn, now_or(now))
        where = [_readable(conn, viewer, listed)]
        if status:
            if "status" not in table.c:
                raise InputError(f"{listed.what} have no status to filter by; drop --status")
            where.append(table.c.status == status)
        if open_only:  # only notices are open or closed
            where.append(_open_notices(conn, seen.now) if table is notices else false())
        total = conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
        if before is not None:
            where.append(table.c.id < before)
        rows = conn.execute(
            select(table).where(*where).order_by(table.c.id.desc()).limit(limit + 1)
        ).all()
        page = [listed.show(r, seen) for r in rows[:limit]]
    more = len(rows) > limit
    return {"items": page, "total": int(total), "next_before": page[-1]["id"] if more else None}
