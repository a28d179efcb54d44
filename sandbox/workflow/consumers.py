"""Consumers' part in security (Art. 21): incidents they report, and their plans.

A consumer holds what operators delivered to it: a report's files, a verification
product's answers. Art. 21 wants incidents reported at once and a plan ready for them,
from everyone handling public data, so:

* :func:`report_on_product`: a consumer reports a leak, damage, loss or misuse of a
  product that reached it (delivered to it, or a verification product that answered its
  calls; any other id gets one answer, ``not_delivered``, whether it exists or not). The
  product's operator, the authority that signed the agreement it was made under (the
  city authorities for a direct grant) and the providers of its datasets are told in
  their inboxes, in the report's transaction, with one ledger entry
  ``incident.reported``. **Nothing is suspended.** An operator's or an authority's
  report suspends the operator's whole data use at once
  (:func:`sandbox.workflow.supervision.report_incident`), because they answer for it;
  a consumer's report is unverified, and if it suspended, any consumer could shut any
  operator down with one sentence. The authority, told, checks and acts (``agreement
  suspend``, or ``incident report --operator`` itself).
* :func:`file_plan`: a consumer files its incident-response plan (who is called, what
  is stopped, how the data is contained); a new filing replaces the last one as the
  plan in force, and every filing stays. Listed to authorities and auditors
  (``GET /v1/workflow/plans``). Filing one is not a condition of delivery: the duty is
  the consumer's, the record is the authority's evidence.

:func:`incident_report` is the one entry of ``sandbox incident report`` and
``POST /v1/incidents``: ``--operator`` (operators and authorities) or ``--product``
(consumers), never both.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import InputError, PermissionDenied
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import datasets, grants, inserted_id, jobs, metadata, principals, products
from sandbox.data.products import delivered_to
from sandbox.registry.base import need_text
from sandbox.registry.inbox import notify
from sandbox.registry.tables import agreements, consumer_plans, incident_products, incidents
from sandbox.workflow.feedback import answered
from sandbox.workflow.supervision import IncidentKind, report_incident

ARTICLE = "Art. 21"
MAX_PLAN = 10_000


def incident_report(
    platform: Platform,
    reporter: Principal,
    kind: IncidentKind | str,
    description: str,
    *,
    operator: str | None = None,
    product: str | None = None,
) -> dict:
    """An operator's or authority's incident (``operator``), or a consumer's (``product``)."""
    if (operator is None) == (product is None):
        raise InputError(
            "name either --operator (operators and authorities) or --product (consumers) (Art. 21)",
            article=ARTICLE,
        )
    if product is not None:
        return report_on_product(platform, reporter, product, kind, description)
    assert operator is not None
    return report_incident(platform, reporter, operator, IncidentKind(kind), description)


def _origin(conn: Connection, consumer: Principal, product: str) -> tuple[int, int | None, list]:
    """The operator, agreement and dataset names of a product that reached the consumer;
    the one refusal otherwise (Art. 21; ids must not be probed, as in feedback)."""
    if product in delivered_to(conn, consumer.id):
        row = conn.execute(
            select(products.c.operator_id, jobs.c.inputs_json)
            .join(jobs, jobs.c.id == products.c.job_id)
            .where(products.c.id == product)
        ).one()
        inputs = json.loads(row.inputs_json or "[]")
        ids = [i["grant"] for i in inputs if i.get("grant") is not None]
        made_under = conn.execute(
            select(grants.c.agreement_id).where(grants.c.id.in_(ids), grants.c.agreement_id.is_not(None))
        ).scalars().first()  # fmt: skip
        return row.operator_id, made_under, [i["dataset"] for i in inputs]
    if answered(conn, consumer.id, product):
        offering = metadata.tables["verify_products"]
        row = conn.execute(select(offering).where(offering.c.name == product)).one()
        tables = list(json.loads(row.index_versions_json or "{}"))
        tables = tables or [json.loads(row.definition_json)["dataset"]]
        return row.operator_id, row.agreement_id, tables
    raise PermissionDenied(
        f"product '{product}' was not delivered to {consumer.name}, nor answered a call of "
        "its; a consumer reports incidents of the products that reached it (Art. 21)",
        article=ARTICLE,
        code="not_delivered",
    )


def _told(conn: Connection, operator_id: int, agreement_id: int | None, names: list) -> set[int]:
    """The product's operator, the authority that signed its agreement (the city
    authorities without one) and the providers of its datasets."""
    signer = conn.execute(
        select(agreements.c.signed_by).where(agreements.c.id == agreement_id)
    ).scalar()
    authorities = {signer} if signer is not None else set(
        conn.execute(
            select(principals.c.id).where(
                principals.c.role == Role.AUTHORITY.value, principals.c.jurisdiction == "city"
            )
        ).scalars()
    )  # fmt: skip
    providers = set(
        conn.execute(select(datasets.c.provider_id).where(datasets.c.name.in_(names))).scalars()
    )
    return {operator_id} | authorities | providers


def report_on_product(
    platform: Platform, consumer: Principal, product: str, kind: IncidentKind | str,
    description: str,
) -> dict:  # fmt: skip
    """A consumer's incident on a product that reached it: recorded and told to the
    operator, the signing authority and the providers; nothing suspended (see above)."""
    require_role(consumer, Role.CONSUMER, action="report incidents on products", article=ARTICLE)
    kind = IncidentKind(kind)
    need_text({"description": description}, ARTICLE)
    with platform.store.transaction() as conn:
        operator_id, agreement_id, names = _origin(conn, consumer, product)
        incident = inserted_id(
            conn.execute(
                incidents.insert().values(
                    operator_id=operator_id, reported_by=consumer.id, kind=kind.value,
                    description=description, created_at=now_utc(),
                    suspended_json=json.dumps({"agreements": [], "grants": []}),
                )
            )
        )  # fmt: skip
        conn.execute(incident_products.insert().values(incident_id=incident, product=product))
        operator = conn.execute(
            select(principals.c.name).where(principals.c.id == operator_id)
        ).scalar_one()
        details = {"operator": operator, "kind": kind.value, "product": product,
                   "agreement": agreement_id, "agreements": [], "grants": []}  # fmt: skip
        platform.record(
            conn, consumer.actor, "incident.reported", f"incident:{incident}", details, ARTICLE
        )
        body = {"operator": operator, "kind": kind.value, "product": product,
                "description": description, "reported_by": consumer.name}  # fmt: skip
        notified = [
            notify(
                platform,
                conn,
                consumer.actor,
                who,
                "incident",
                f"incident:{incident}",
                body,
                ARTICLE,
            )  # fmt: skip
            for who in sorted(_told(conn, operator_id, agreement_id, names))
        ]
    return {"incident": incident, "product": product, "suspended": [], "grants": [],
            "notified": notified}  # fmt: skip


def file_plan(platform: Platform, consumer: Principal, plan: str) -> int:
    """A consumer files its incident-response plan (Art. 21); returns the filing's id."""
    require_role(consumer, Role.CONSUMER, action="file consumers' incident plans", article=ARTICLE)
    need_text({"plan": plan}, ARTICLE)
    if len(plan) > MAX_PLAN:
        raise InputError(
            f"a plan is at most {MAX_PLAN} characters, not {len(plan)} (Art. 21)", article=ARTICLE
        )
    with platform.store.transaction() as conn:
        filed = inserted_id(
            conn.execute(
                consumer_plans.insert().values(
                    consumer_id=consumer.id, plan=plan, created_at=now_utc()
                )
            )
        )
        digest = hashlib.sha256(plan.encode()).hexdigest()
        platform.record(
            conn,
            consumer.actor,
            "incident_plan.filed",
            f"incident_plan:{filed}",
            {"consumer": consumer.name, "sha256": digest, "chars": len(plan)},
            ARTICLE,
        )
    return filed
