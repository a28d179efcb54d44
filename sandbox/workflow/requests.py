"""Data requests, the grants they create, and data-quality tickets (Art. 14).

An operator requests a dataset under its active agreement; the dataset's
provider (or an authority of the agreement's jurisdiction) approves or
refuses. Nobody approves a request of its own organisation. Approval creates a
grant linked to the agreement: valid until the agreement's end, with the job
kinds, columns, disclosure overrides and review requirement of the agreement,
so the job gate (:func:`sandbox.data.grants.may_run`) enforces the agreement on
every job. Operators report quality problems as tickets the provider answers,
naming the new dataset version that fixes them, if any.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.access import GrantStatus, agreement_refusal
from policies.errors import Conflict, NotFound, PermissionDenied
from policies.workflow import RequestState, TicketState, check_not_own_org, covers, refuse
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import datasets, grants, inserted_id
from sandbox.data.places import require_cut
from sandbox.data.vault import get_version
from sandbox.registry.base import create, dataset_row, get, move, need_text, now_or
from sandbox.registry.inbox import notify
from sandbox.registry.jurisdiction import CITY
from sandbox.registry.tables import agreements, data_requests, quality_tickets
from sandbox.registry.terms import terms_of
from sandbox.workflow.countersign import sign_by_approval
from sandbox.workflow.providers import open_hold


def _agreement_allows(conn, agreement_id: int, dataset: str, columns, now: datetime) -> None:
    terms = terms_of(conn, [agreement_id]).get(agreement_id)
    kind = min(terms.job_kinds) if terms and terms.job_kinds else "sql_aggregate"
    problem = agreement_refusal(terms, agreement_id, dataset, kind, now, columns)
    if problem is not None:
        raise problem


def request_data(
    platform: Platform,
    operator: Principal,
    agreement_id: int,
    dataset: str,
    *,
    purpose: str,
    columns: Sequence[str] | None = None,
    now: datetime | None = None,
) -> int:
    """File a data request under the operator's agreement; returns its id."""
    require_role(operator, Role.OPERATOR, action="request data", article="Art. 14")
    need_text({"purpose": purpose}, "Art. 14")
    with platform.store.transaction() as conn:
        row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
        if row is None or row.operator_id != operator.id:
            raise NotFound(f"no agreement {agreement_id} of yours")
        ds = dataset_row(conn, dataset)
        chosen = sorted(set(columns)) if columns is not None else None
        _agreement_allows(conn, agreement_id, dataset, chosen, now_or(now))
        if row.jurisdiction != CITY:  # a county agreement reads its county's rows only
            require_cut(get_version(conn, platform, dataset), row.jurisdiction)
        return create(
            platform,
            conn,
            data_requests,
            "data_request",
            RequestState.SUBMITTED,
            operator.actor,
            {
                "agreement_id": agreement_id,
                "operator_id": operator.id,
                "dataset_id": ds.id,
                "purpose": purpose,
                "columns_json": json.dumps(chosen) if chosen is not None else None,
            },
            {"agreement": agreement_id, "dataset": dataset, "columns": chosen},
        )


def _decider(conn, approver: Principal, req, action: str) -> None:
    """The dataset's provider, or an authority of the agreement's jurisdiction; never the
    requester's own organisation."""
    agreement = get(conn, agreements, req.agreement_id, "agreement")
    ds = conn.execute(select(datasets).where(datasets.c.id == req.dataset_id)).first()
    if approver.role is Role.PROVIDER:
        if ds.provider_id != approver.id:  # not naming the dataset: it is not the asker's
            raise PermissionDenied(
                f"data request {req.id} is for another provider's dataset; only its "
                f"provider or the authority may {action} (Art. 14); `sandbox request "
                "list` shows the requests for your datasets",
                article="Art. 14",
                code="not_the_provider",
            )
    elif approver.role is Role.AUTHORITY:
        if not covers(approver.jurisdiction, agreement.jurisdiction):
            raise PermissionDenied(
                f"{approver.name} may not {action} outside its county (Art. 5)",
                article="Art. 5",
                code="outside_jurisdiction",
            )
    else:
        raise PermissionDenied(
            f"{approver.name} is a {approver.role.value}; only the dataset's "
            f"provider or an authority may {action} (Art. 14)",
            article="Art. 14",
        )
    requester = by_id(conn, req.operator_id)
    check_not_own_org(approver.name, approver.org, requester.org, "request it is", "Art. 14")


def approve(
    platform: Platform, approver: Principal, request_id: int, now: datetime | None = None
) -> int:
    """Approve a data request; returns the id of the grant it creates."""
    moment = now_or(now)
    with platform.store.transaction() as conn:
        req = get(conn, data_requests, request_id, "data request")
        _decider(conn, approver, req, "approve data requests")
        if RequestState(req.status) is not RequestState.SUBMITTED:
            raise Conflict(f"data request {request_id} is {req.status} already")
        agreement = get(conn, agreements, req.agreement_id, "agreement")
        ds = conn.execute(select(datasets).where(datasets.c.id == req.dataset_id)).one()
        if (held := open_hold(conn, agreement.id, ds.id)) is not None:
            raise refuse(
                "data_use_held",
                f"the provider has {held.status} the use of '{ds.name}' under agreement "
                f"{agreement.id} (hold {held.id})",
                "Art. 24",
                f"data_request:{request_id}",
                "the provider lifts its suspension first",
            )
        requested = json.loads(req.columns_json) if req.columns_json else None
        _agreement_allows(conn, agreement.id, ds.name, requested, moment)
        scope = json.loads(agreement.scope_json)
        columns = requested if requested is not None else scope["datasets"].get(ds.name)
        get_version(conn, platform, ds.name)  # the dataset has a version to read
        grant_id = _grant_from(platform, conn, approver, req, ds.name, agreement, columns)
        sign_by_approval(platform, conn, approver, agreement, ds, request_id)  # Art. 4, 13
        move(
            platform,
            conn,
            data_requests,
            "data_request",
            request_id,
            RequestState.APPROVED,
            approver.actor,
            {"grant": grant_id},
            decided_by=approver.id,
            grant_id=grant_id,
        )
        body = {"request": request_id, "dataset": ds.name, "grant": grant_id}
        notify(platform, conn, approver.actor, req.operator_id, "data_request_approved",
               f"data_request:{request_id}", body, "Art. 14")  # fmt: skip
        return grant_id


def refuse_request(platform: Platform, approver: Principal, request_id: int, reason: str) -> None:
    need_text({"reason": reason}, "Art. 14")
    with platform.store.transaction() as conn:
        req = get(conn, data_requests, request_id, "data request")
        _decider(conn, approver, req, "refuse data requests")
        move(
            platform,
            conn,
            data_requests,
            "data_request",
            request_id,
            RequestState.REFUSED,
            approver.actor,
            {"reason": reason},
            decided_by=approver.id,
            reason=reason,
        )
        ds = conn.execute(select(datasets.c.name).where(datasets.c.id == req.dataset_id)).one()
        body = {"request": request_id, "dataset": ds.name, "reason": reason}
        notify(platform, conn, approver.actor, req.operator_id, "data_request_refused",
               f"data_request:{request_id}", body, "Art. 14")  # fmt: skip


# --- quality tickets -----------------------------------------------------------------------


def report_quality(platform: Platform, reporter: Principal, dataset: str, text: str) -> int:
    """An operator reports a data-quality problem; the provider must answer it (Art. 14)."""
    require_role(reporter, Role.OPERATOR, action="report data-quality problems", article="Art. 14")
    need_text({"text": text}, "Art. 14")
    with platform.store.transaction() as conn:
        ds = dataset_row(conn, dataset)
        ticket = create(
            platform,
            conn,
            quality_tickets,
            "quality_ticket",
            TicketState.OPEN,
            reporter.actor,
            {"dataset_id": ds.id, "reporter_id": reporter.id, "text": text},
            {"dataset": dataset},
        )
        body = {"ticket": ticket, "dataset": dataset, "text": text, "reporter": reporter.name}
        notify(platform, conn, reporter.actor, ds.provider_id, "quality_ticket",
               f"quality_ticket:{ticket}", body, "Art. 14")  # fmt: skip
        return ticket


def answer_quality(
    platform: Platform,
    provider: Principal,
    ticket_id: int,
    text: str,
    fixed_version: int | None = None,
) -> None:
    require_role(provider, Role.PROVIDER, action="answer quality tickets", article="Art. 14")
    need_text({"answer": text}, "Art. 14")
    with platform.store.transaction() as conn:
        ticket = get(conn, quality_tickets, ticket_id, "quality ticket")
        ds = conn.execute(select(datasets).where(datasets.c.id == ticket.dataset_id)).one()
        if ds.provider_id != provider.id:  # not naming the dataset: it is not the asker's
            raise PermissionDenied(
                f"quality ticket {ticket_id} is on another provider's dataset; a provider "
                "answers the tickets on its own data (Art. 14); `sandbox quality list` "
                "shows them",
                article="Art. 14",
                code="not_the_provider",
            )
        if fixed_version is not None:
            get_version(conn, platform, ds.name, fixed_version)
        move(
            platform,
            conn,
            quality_tickets,
            "quality_ticket",
            ticket_id,
            TicketState.ANSWERED,
            provider.actor,
            {"dataset": ds.name, "fixed_version": fixed_version},
            answer=text,
            answered_by=provider.id,
            fixed_version=fixed_version,
        )
        body = {"ticket": ticket_id, "dataset": ds.name, "answer": text,
                "fixed_version": fixed_version}  # fmt: skip
        notify(platform, conn, provider.actor, ticket.reporter_id, "quality_answered",
               f"quality_ticket:{ticket_id}", body, "Art. 14")  # fmt: skip


def _grant_from(
    platform: Platform,
    conn: Connection,
    approver: Principal,
    req: Any,
    dataset: str,
    agreement: Any,
    columns: list[str] | None,
) -> int:
    """The grant an approved request creates, in the agreement's scope, and its
    ``grant.add`` entry (Art. 14); returns its id."""
    scope = json.loads(agreement.scope_json)
    inserted = conn.execute(
        grants.insert().values(
            operator_id=req.operator_id,
            dataset_id=req.dataset_id,
            columns_json=json.dumps(sorted(columns)) if columns is not None else None,
            extra_aggregates_json=json.dumps(scope.get("aggregates", [])),
            aggregate_expressions=False,
            job_kinds_json=json.dumps(sorted(scope["job_kinds"])),
            disclosure_json=json.dumps(scope.get("disclosure", {})),
            valid_from=agreement.valid_from,
            valid_until=agreement.valid_until,
            status=GrantStatus.ACTIVE.value,
            granted_by=approver.id,
            created_at=now_utc(),
            agreement_id=agreement.id,
            review_required=bool(agreement.review_required),
        )
    )
    grant_id = inserted_id(inserted)
    platform.record(
        conn,
        approver.actor,
        "grant.add",
        f"grant:{grant_id}",
        {
            "from": None,
            "to": GrantStatus.ACTIVE.value,
            "operator": by_id(conn, req.operator_id).name,
            "dataset": dataset,
            "agreement": agreement.id,
            "columns": columns if columns is not None else "all",
            "job_kinds": sorted(scope["job_kinds"]),
            "valid_from": agreement.valid_from,
            "valid_until": agreement.valid_until,
            "disclosure": scope.get("disclosure", {}),
            "review_required": bool(agreement.review_required),
            "request": req.id,
        },
        "Art. 14",
    )
    return grant_id
