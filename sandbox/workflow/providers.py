"""Providers as authorizing units (Art. 4, 5, 13, 24): what uses their data, and holds on it.

A provider authorized the use of its datasets (by approving data requests, Art. 14), so
it supervises that use (Art. 5): :func:`uses_of` lists the agreements whose scope names
its datasets, the grants on them, and the jobs and products that read them. It may stop
the use of one dataset under one agreement: :func:`suspend_use` suspends the grants of
that agreement on that dataset and cancels the queued and running jobs that read them,
and no other job (the operator's other agreements and datasets go on); :func:`lift_use`
restores the grants the hold stopped; :func:`terminate_use` revokes them for good. Each
hold is a row of ``provider_holds`` moved along :class:`policies.workflow.HoldState`,
one ledger entry per move, and the operator and the signing authority are notified.

While a hold is open (suspended or terminated) no new data request for that dataset
under that agreement is approved (:func:`open_hold`, asked by
:func:`sandbox.workflow.requests.approve`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.access import GrantStatus
from policies.errors import Conflict, NotFound, PermissionDenied
from policies.workflow import AgreementState, HoldState
from sandbox.core.ledger import Actor
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import datasets, grants, jobs, products
from sandbox.registry.base import create, dataset_row, get, move, need_text
from sandbox.registry.inbox import tell_agreement
from sandbox.registry.tables import agreements, product_dispositions, provider_holds
from sandbox.run.jobstate import ACTIVE_STATES, fail_jobs

ARTICLE = "Art. 24"
OPEN = (HoldState.SUSPENDED.value, HoldState.TERMINATED.value)


# --- the jobs that read a grant -----------------------------------------------------------------


def _input_grants(inputs_json: str | None) -> set[int]:
    items = json.loads(inputs_json or "[]")
    return {i["grant"] for i in items if isinstance(i, dict) and i.get("grant") is not None}


def active_jobs_using(conn: Connection, grant_ids: Iterable[int]) -> list[Row]:
    """Queued, running or checking jobs whose inputs were read under one of ``grant_ids``."""
    wanted = set(grant_ids)
    rows = conn.execute(
        select(jobs.c.id, jobs.c.operator_id, jobs.c.inputs_json)
        .where(jobs.c.status.in_([s.value for s in ACTIVE_STATES]))
        .order_by(jobs.c.id)
    ).all()
    return [r for r in rows if _input_grants(r.inputs_json) & wanted]


def cancel_jobs_using(
    platform: Platform, conn: Connection, grant_ids: Iterable[int], reason: str, article: str
) -> list[int]:
    """Fail the active jobs that read one of ``grant_ids``, in the caller's transaction;
    the operator's other jobs go on. A worker busy with one finishes, and its result is
    dropped: the job is no longer ``running``."""
    why = {"code": "cancelled", "message": reason, "article": article}
    return fail_jobs(platform, conn, active_jobs_using(conn, grant_ids), why, article)


# --- holds --------------------------------------------------------------------------------------


def _own(conn: Connection, provider: Principal, agreement_id: int, dataset: str) -> tuple[Row, Row]:
    """The agreement and the provider's dataset in its scope, or a refusal naming why."""
    require_role(provider, Role.PROVIDER, action="hold the use of its data", article="Art. 5")
    ds = dataset_row(conn, dataset)
    if ds.provider_id != provider.id:
        raise PermissionDenied(
            f"dataset '{dataset}' belongs to another provider; a provider holds the use of "
            "its own data only (Art. 5)",
            article="Art. 5",
            code="not_the_provider",
        )
    row = get(conn, agreements, agreement_id, "agreement")
    if dataset not in json.loads(row.scope_json)["datasets"]:
        raise NotFound(f"agreement {agreement_id} does not cover dataset '{dataset}'")
    return row, ds


def open_hold(conn: Connection, agreement_id: int, dataset_id: int) -> Row | None:
    """The suspended or terminated hold on this dataset under this agreement, if any."""
    return conn.execute(
        select(provider_holds).where(
            provider_holds.c.agreement_id == agreement_id,
            provider_holds.c.dataset_id == dataset_id,
            provider_holds.c.status.in_(OPEN),
        )
    ).first()


def _grants_of(conn: Connection, agreement_id: int, dataset_id: int, status: GrantStatus) -> list:
    return list(
        conn.execute(
            select(grants.c.id).where(
                grants.c.agreement_id == agreement_id,
                grants.c.dataset_id == dataset_id,
                grants.c.status == status.value,
            )
        ).scalars()
    )


def _set_grants(
    platform: Platform, conn, actor: Actor, ids: list[int], new: GrantStatus, why: str
) -> None:
    for grant_id in ids:
        old = conn.execute(select(grants.c.status).where(grants.c.id == grant_id)).scalar_one()
        conn.execute(grants.update().where(grants.c.id == grant_id).values(status=new.value))
        platform.record(
            conn,
            actor,
            f"grant.{new.value}",
            f"grant:{grant_id}",
            {"from": old, "to": new.value, "reason": why},
            ARTICLE,
        )


def _new_hold(
    platform: Platform,
    conn: Connection,
    provider: Principal,
    agreement_id: int,
    ds: Row,
    state: HoldState,
    grant_ids: list[int],
    reason: str,
) -> int:
    """A hold row in ``state`` over the grants it stops; one ledger entry."""
    values = {"agreement_id": agreement_id, "dataset_id": ds.id, "provider_id": provider.id,
              "grants_json": json.dumps(grant_ids), "reason": reason}  # fmt: skip
    details = {"agreement": agreement_id, "dataset": ds.name, "grants": grant_ids,
               "reason": reason}  # fmt: skip
    return create(platform, conn, provider_holds, "provider_hold", state, provider.actor,
                  values, details)  # fmt: skip


def suspend_use(
    platform: Platform, provider: Principal, agreement_id: int, dataset: str, reason: str
) -> dict:
    """Suspend the use of the provider's dataset under one agreement."""
    need_text({"reason": reason}, ARTICLE)
    with platform.store.transaction() as conn:
        agreement, ds = _own(conn, provider, agreement_id, dataset)
        if AgreementState(agreement.status) not in (
            AgreementState.ACTIVE,
            AgreementState.SUSPENDED,
        ):
            raise Conflict(f"agreement {agreement_id} is {agreement.status}: nothing to suspend")
        if (held := open_hold(conn, agreement_id, ds.id)) is not None:
            raise Conflict(f"the use of '{dataset}' under agreement {agreement_id} is "
                           f"{held.status} already (hold {held.id})")  # fmt: skip
        stopped = _grants_of(conn, agreement_id, ds.id, GrantStatus.ACTIVE)
        why = f"{provider.name} suspended the use of '{dataset}': {reason}"
        hold = _new_hold(platform, conn, provider, agreement_id, ds, HoldState.SUSPENDED,
                         stopped, reason)  # fmt: skip
        _set_grants(platform, conn, provider.actor, stopped, GrantStatus.SUSPENDED, why)
        cancelled = cancel_jobs_using(platform, conn, stopped, why, ARTICLE)
        body = {"hold": hold, "dataset": dataset, "reason": reason, "cancelled_jobs": cancelled}
        tell_agreement(platform, conn, provider.actor, agreement, "data_use_suspended", body,
                       ARTICLE, signer=True)  # fmt: skip
    return {"hold": hold, "status": HoldState.SUSPENDED.value, "grants": stopped,
            "cancelled_jobs": cancelled}  # fmt: skip


def _held(conn, provider: Principal, agreement_id: int, dataset: str) -> tuple[Row, Row, Row]:
    agreement, ds = _own(conn, provider, agreement_id, dataset)
    held = open_hold(conn, agreement_id, ds.id)
    if held is None or HoldState(held.status) is not HoldState.SUSPENDED:
        state = held.status if held is not None else "not held"
        raise Conflict(
            f"the use of '{dataset}' under agreement {agreement_id} is {state}; only a "
            "suspended use may be lifted or ended this way"
        )
    return agreement, ds, held


def lift_use(
    platform: Platform, provider: Principal, agreement_id: int, dataset: str, reason: str
) -> dict:
    """Lift the provider's suspension: the grants it stopped are active again."""
    need_text({"reason": reason}, ARTICLE)
    with platform.store.transaction() as conn:
        agreement, ds, held = _held(conn, provider, agreement_id, dataset)
        move(platform, conn, provider_holds, "provider_hold", held.id, HoldState.LIFTED,
             provider.actor, {"reason": reason})  # fmt: skip
        still = set(_grants_of(conn, agreement_id, ds.id, GrantStatus.SUSPENDED))
        stopped = [g for g in json.loads(held.grants_json) if g in still]
        why = f"{provider.name} lifted its suspension of '{dataset}': {reason}"
        _set_grants(platform, conn, provider.actor, stopped, GrantStatus.ACTIVE, why)
        body = {"hold": held.id, "dataset": dataset, "reason": reason}
        tell_agreement(platform, conn, provider.actor, agreement, "data_use_restored", body,
                       ARTICLE, signer=True)  # fmt: skip
    return {"hold": held.id, "status": HoldState.LIFTED.value, "grants": stopped}


def terminate_use(
    platform: Platform, provider: Principal, agreement_id: int, dataset: str, reason: str
) -> dict:
    """End the use of the provider's dataset under one agreement: its grants are revoked,
    the jobs reading them cancelled, and no new request for it is approved."""
    need_text({"reason": reason}, ARTICLE)
    with platform.store.transaction() as conn:
        agreement, ds = _own(conn, provider, agreement_id, dataset)
        held = open_hold(conn, agreement_id, ds.id)
        if held is not None and HoldState(held.status) is HoldState.TERMINATED:
            raise Conflict(f"the use of '{dataset}' under agreement {agreement_id} has ended")
        ended = _grants_of(conn, agreement_id, ds.id, GrantStatus.ACTIVE) + _grants_of(
            conn, agreement_id, ds.id, GrantStatus.SUSPENDED
        )
        details = {"agreement": agreement_id, "dataset": dataset, "grants": ended,
                   "reason": reason}  # fmt: skip
        if held is not None:
            move(platform, conn, provider_holds, "provider_hold", held.id,
                 HoldState.TERMINATED, provider.actor, details)  # fmt: skip
            hold = held.id
        else:
            hold = _new_hold(platform, conn, provider, agreement_id, ds, HoldState.TERMINATED,
                             ended, reason)  # fmt: skip
        why = f"{provider.name} ended the use of '{dataset}': {reason}"
        _set_grants(platform, conn, provider.actor, ended, GrantStatus.REVOKED, why)
        cancelled = cancel_jobs_using(platform, conn, ended, why, ARTICLE)
        body = {"hold": hold, "dataset": dataset, "reason": reason, "cancelled_jobs": cancelled}
        tell_agreement(platform, conn, provider.actor, agreement, "data_use_terminated", body,
                       ARTICLE, signer=True)  # fmt: skip
    return {"hold": hold, "status": HoldState.TERMINATED.value, "grants": ended,
            "cancelled_jobs": cancelled}  # fmt: skip


HOLDS = {"suspend": suspend_use, "lift": lift_use, "terminate": terminate_use}


# --- what uses a provider's data ----------------------------------------------------------------


def uses_of(conn: Connection, provider: Principal) -> dict:
    """The agreements, grants, jobs and products that use the provider's datasets."""
    require_role(provider, Role.PROVIDER, action="list the uses of its data", article="Art. 5")
    mine = {
        r.id: r.name
        for r in conn.execute(
            select(datasets.c.id, datasets.c.name).where(datasets.c.provider_id == provider.id)
        )
    }
    names = set(mine.values())
    found_agreements = []
    for row in conn.execute(select(agreements).order_by(agreements.c.id)).all():
        covered = sorted(names & set(json.loads(row.scope_json)["datasets"]))
        if covered:
            found_agreements.append(
                {"id": row.id, "operator": by_id(conn, row.operator_id).name,
                 "status": row.status, "datasets": covered, "until": row.valid_until}
            )  # fmt: skip
    grant_rows = conn.execute(
        select(grants).where(grants.c.dataset_id.in_(list(mine))).order_by(grants.c.id)
    ).all()
    found_grants = [
        {"id": g.id, "agreement": g.agreement_id, "dataset": mine[g.dataset_id],
         "operator": by_id(conn, g.operator_id).name, "status": g.status}
        for g in grant_rows
    ]  # fmt: skip
    return {
        "datasets": sorted(names),
        "agreements": found_agreements,
        "grants": found_grants,
        **_jobs_and_products(conn, {g.id: mine[g.dataset_id] for g in grant_rows}),
    }


def _jobs_and_products(conn: Connection, grant_datasets: dict[int, str]) -> dict:
    disposed = set(  # deleted at disposal (Art. 13): no longer a product anyone uses
        conn.execute(
            select(product_dispositions.c.product_id).where(
                product_dispositions.c.action == "delete"
            )
        ).scalars()
    )
    found_jobs, found_products = [], []
    rows = conn.execute(
        select(jobs.c.id, jobs.c.kind, jobs.c.status, jobs.c.operator_id, jobs.c.inputs_json,
               jobs.c.product_id).order_by(jobs.c.id)
    ).all()  # fmt: skip
    for job in rows:
        used = _input_grants(job.inputs_json) & set(grant_datasets)
        if not used:
            continue
        names = sorted({grant_datasets[g] for g in used})
        operator = by_id(conn, job.operator_id).name
        found_jobs.append({"id": job.id, "kind": job.kind, "state": job.status,
                           "operator": operator, "datasets": names})  # fmt: skip
        if job.product_id and job.product_id not in disposed:
            product = conn.execute(
                select(products.c.id, products.c.created_at).where(products.c.id == job.product_id)
            ).first()
            if product is not None:
                found_products.append({"id": product.id, "job": job.id, "operator": operator,
                                       "datasets": names, "created_at": product.created_at})  # fmt: skip
    return {"jobs": found_jobs, "products": found_products}
