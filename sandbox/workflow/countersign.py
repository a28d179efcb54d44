"""Providers sign the agreement for their own data (授权单位, Art. 4, 13).

An agreement is signed by the authority and the operator; the data it covers is the
providers'. Each provider is a party for its own datasets: :func:`countersign` records
its signature on one dataset of the agreement's scope, with the conditions it adds in
its own words, tells the operator and the signing authority, and writes one ledger
entry (``agreement.countersigned``). A provider that approves a data request for its
dataset signs by that act if it had not signed yet (:func:`sign_by_approval`, in the
approval's transaction), so every grant a provider made is backed by its signature. A
request approved by an authority instead (Art. 14 allows it) leaves the dataset
*unsigned by its provider*, and :func:`signatures_of` says so: the agreement shows, for
each dataset, who signed for it and which wait.

A signature is given once per agreement and dataset, only by the dataset's provider, only
while the agreement is active; it cannot be withdrawn, and a provider ends the use of its
data with ``provider suspend`` or ``provider terminate`` (:mod:`sandbox.workflow.providers`).
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import Conflict, InputError, PermissionDenied
from policies.workflow import AgreementState
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import datasets
from sandbox.registry.base import get, need_text
from sandbox.registry.inbox import tell_agreement
from sandbox.registry.tables import agreements, countersignatures

ARTICLE = "Art. 13"
MAX_TERMS = 4000


def countersign(
    platform: Platform, provider: Principal, agreement_id: int, dataset: str, terms: str
) -> dict:
    """The provider's signature for ``dataset`` on the agreement; returns it."""
    require_role(provider, Role.PROVIDER, action="countersign agreements", article=ARTICLE)
    need_text({"terms": terms}, ARTICLE)
    if len(terms) > MAX_TERMS:
        raise InputError(
            f"terms: at most {MAX_TERMS} characters, not {len(terms)} ({ARTICLE})",
            article=ARTICLE,
        )
    with platform.store.transaction() as conn:
        row, ds = _signable(conn, provider, agreement_id, dataset)
        return _record(platform, conn, provider, row, ds, terms.strip(), how="countersign")


def sign_by_approval(
    platform: Platform,
    conn: Connection,
    approver: Principal,
    agreement: Row,
    ds: Row,
    request_id: int,
) -> None:
    """A provider approving a data request on its dataset signs for it, unless it did."""
    if approver.role is not Role.PROVIDER or ds.provider_id != approver.id:
        return
    if _signed(conn, agreement.id, ds.id):
        return
    terms = f"signed by approving data request {request_id}"
    _record(platform, conn, approver, agreement, ds, terms, how=f"data_request:{request_id}")


def signatures_of(conn: Connection, agreement: Row) -> list[dict]:
    """For each dataset of the agreement's scope: its provider and whether (and how) it
    signed; in the scope's order."""
    names = sorted(json.loads(agreement.scope_json)["datasets"])
    rows = conn.execute(select(datasets).where(datasets.c.name.in_(names))).all()
    by_name = {r.name: r for r in rows}
    signed = {
        r.dataset_id: r
        for r in conn.execute(
            select(countersignatures).where(countersignatures.c.agreement_id == agreement.id)
        )
    }
    out = []
    for name in names:
        ds = by_name.get(name)
        sig = signed.get(ds.id) if ds is not None else None
        out.append(
            {
                "dataset": name,
                "provider": by_id(conn, ds.provider_id).name if ds is not None else None,
                "signed": sig is not None,
                "signed_at": sig.created_at if sig is not None else None,
                "terms": sig.terms if sig is not None else None,
            }
        )
    return out


def names_provider_data(conn: Connection, provider: Principal, agreement: Row) -> bool:
    """Whether the agreement's scope names a dataset of ``provider`` (it may read it)."""
    names = list(json.loads(agreement.scope_json)["datasets"])
    owned = conn.execute(
        select(datasets.c.id).where(
            datasets.c.name.in_(names), datasets.c.provider_id == provider.id
        )
    ).first()
    return owned is not None


def _signable(
    conn: Connection, provider: Principal, agreement_id: int, dataset: str
) -> tuple[Row, Row]:
    row = get(conn, agreements, agreement_id, "agreement")
    ds = conn.execute(select(datasets).where(datasets.c.name == dataset)).first()
    if ds is None or ds.provider_id != provider.id:
        raise PermissionDenied(
            f"'{dataset}' is not a dataset of {provider.name}; a provider signs only for its "
            f"own data (Art. 4, {ARTICLE})",
            article=ARTICLE,
            code="not_the_provider",
        )
    if dataset not in json.loads(row.scope_json)["datasets"]:
        raise Conflict(f"agreement {agreement_id} does not cover dataset '{dataset}' ({ARTICLE})")
    if row.status != AgreementState.ACTIVE.value:
        raise Conflict(
            f"agreement {agreement_id} is {row.status}; a provider signs an active agreement "
            f"only ({ARTICLE})"
        )
    if _signed(conn, row.id, ds.id):
        raise Conflict(
            f"{provider.name} has signed agreement {agreement_id} for '{dataset}' already "
            f"({ARTICLE})"
        )
    return row, ds


def _signed(conn: Connection, agreement_id: int, dataset_id: int) -> bool:
    return (
        conn.execute(
            select(countersignatures.c.id).where(
                countersignatures.c.agreement_id == agreement_id,
                countersignatures.c.dataset_id == dataset_id,
            )
        ).first()
        is not None
    )


def _record(
    platform: Platform,
    conn: Connection,
    provider: Principal,
    row: Row,
    ds: Row,
    terms: str,
    how: str,
) -> dict:
    stamp = now_utc()
    conn.execute(
        countersignatures.insert().values(
            agreement_id=row.id,
            dataset_id=ds.id,
            provider_id=provider.id,
            terms=terms,
            created_at=stamp,
        )
    )
    details = {"dataset": ds.name, "provider": provider.name, "terms": terms, "by": how}
    platform.record(conn, provider.actor, "agreement.countersigned", f"agreement:{row.id}",
                    details, ARTICLE)  # fmt: skip
    tell_agreement(platform, conn, provider.actor, row, "agreement_countersigned",
                   {"dataset": ds.name, "provider": provider.name, "terms": terms}, ARTICLE,
                   signer=True)  # fmt: skip
    return {"agreement": row.id, "dataset": ds.name, "terms": terms, "signed_at": stamp}
