"""A verification product's lifecycle: define (operator), approve or reject (authority), list,
refresh its index when a dataset has a new version, lift a consumer's block.

The states are :class:`policies.verification.ProductState`; each move is one ledger entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from jobs import get_kind
from jobs.verification import KIND
from policies.admission import QueryScope, TableScope
from policies.errors import Conflict, InputError, NotFound, PolicyRefusal
from policies.verification import (
    AdmittedRule,
    Definition,
    ProductState,
    may_move,
)
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.data.grants import may_run
from sandbox.data.places import scoped
from sandbox.data.vault import get_version, list_datasets
from sandbox.registry.base import require_authority
from sandbox.registry.jurisdiction import require_city, scope_of
from sandbox.registry.tables import agreements
from sandbox.verification.index import build
from sandbox.verification.keys import (
    load_secret,
)
from sandbox.verification.tables import (
    verify_products,
    verify_standing,
)

MAX_BATCH = 1000


RESERVED = {"products", "who"}


WITHDRAWING = {
    "agreement_suspended",
    "agreement_terminated",
    "agreement_expired",
    "grant_suspended",
    "grant_revoked",
    "grant_expired",
    "not_granted",
}


FRESHNESS_S = 1.0  # how long a process trusts its look at the datasets' latest versions


def _scope(conn: Connection, platform: Platform) -> QueryScope:
    tables = {}
    for row in list_datasets(conn):
        version = get_version(conn, platform, row["name"])
        tables[row["name"]] = TableScope(row["name"], version.classification)
    return QueryScope(tables=tables)


def admit_definition(conn: Connection, platform: Platform, definition: Definition) -> AdmittedRule:
    """The definition's rule admitted by its job kind against every registered dataset
    (the grants gate, :func:`may_run`, then asks for the columns it reads)."""
    rule: AdmittedRule = get_kind(KIND).plan(definition.to_dict(), _scope(conn, platform))
    return rule


def _agreement_of(grants: Mapping, rule: AdmittedRule) -> int:
    grant = grants[rule.definition.dataset]
    if grant.agreement_id is None:
        raise PolicyRefusal(
            "agreement_required",
            f"verification products are defined under an operation agreement; the grant for "
            f"'{rule.definition.dataset}' is a direct grant",
            article="Art. 13",
            subject=rule.definition.dataset,
            hint="apply under a notice with job kind 'verification' and request the data",
        )
    return grant.agreement_id


def define(
    platform: Platform, operator: Principal, definition: Definition | Mapping
) -> dict[str, Any]:
    """File a product definition; it waits for the authority's approval."""
    require_role(operator, Role.OPERATOR, action="define verification products", article="Art. 13")
    if not isinstance(definition, Definition):
        definition = Definition.from_dict(definition)
    if definition.name in RESERVED:
        raise InputError(f"'{definition.name}' is a reserved name; choose another")
    definition.require_misses()  # a mismatch is always a miss (rule miss_codes)
    with platform.store.transaction() as conn:
        rule = admit_definition(conn, platform, definition)
        grants = may_run(conn, operator, rule.tables, KIND, columns=rule.columns)
        agreement_id = _agreement_of(grants, rule)
        if conn.execute(
            select(verify_products.c.name).where(verify_products.c.name == definition.name)
        ).first():
            raise Conflict(f"a verification product named '{definition.name}' exists")
        stamp = now_utc()
        conn.execute(
            verify_products.insert().values(
                name=definition.name,
                operator_id=operator.id,
                agreement_id=agreement_id,
                definition_json=json.dumps(definition.to_dict()),
                status=ProductState.DEFINED.value,
                created_at=stamp,
                updated_at=stamp,
            )
        )
        platform.record(
            conn,
            operator.actor,
            "verify.defined",
            f"verification:{definition.name}",
            {
                "definition": definition.to_dict(),
                "agreement": agreement_id,
                "tables": list(rule.tables),
                "person_level": rule.person_level,
            },
            "Art. 13",
        )
    return {
        "name": definition.name,
        "state": ProductState.DEFINED.value,
        "agreement": agreement_id,
        "person_level": rule.person_level,
        "subject_keys": [k.name for k in rule.subject_keys],
        "check_keys": [k.name for k in rule.check_keys],
    }


@dataclass(frozen=True)
class Lifecycle:
    """The lifecycle of a kind of offering that consumers call (verification products,
    scoring services; not :class:`sandbox.api.offerings.Offering`, their routes): its table, with ``name``, ``operator_id``, ``agreement_id``, ``status`` (a
    :class:`ProductState`) and ``updated_at``; the noun its messages use; the prefixes of
    its ledger actions (``<action>.<state>``) and targets (``<target>:<name>``)."""

    table: Table
    noun: str
    action: str
    target: str

    def row(self, conn: Connection, name: str):
        row = conn.execute(select(self.table).where(self.table.c.name == name)).first()
        if row is None:
            raise NotFound(f"no {self.noun} '{name}'")
        return row

    def move(
        self,
        platform: Platform,
        conn: Connection,
        name: str,
        new: ProductState,
        actor: Actor,
        details: Mapping[str, Any],
        article: str,
        **values: Any,
    ) -> None:
        """One move of the lifecycle, its row updated and one ledger entry."""
        old = ProductState(self.row(conn, name).status)
        if not may_move(old, new):
            raise Conflict(f"{self.noun} '{name}' is {old.value}; it cannot become {new.value}")
        conn.execute(
            self.table.update()
            .where(self.table.c.name == name)
            .values(status=new.value, updated_at=now_utc(), **values)
        )
        platform.record(
            conn,
            actor,
            f"{self.action}.{new.value}",
            f"{self.target}:{name}",
            {"from": old.value, "to": new.value, **details},
            article,
        )

    def reject(self, platform: Platform, authority: Principal, name: str, reason: str) -> None:
        """The authority turns a defined offering down, with a reason (Art. 13)."""
        action = f"reject {self.noun}s"
        require_role(authority, Role.AUTHORITY, action=action, article="Art. 13")
        if not reason.strip():
            raise InputError("a rejection needs a reason (Art. 13)", article="Art. 13")
        with platform.store.transaction() as conn:
            require_product_authority(conn, authority, self.row(conn, name), action)
            self.move(
                platform, conn, name, ProductState.REJECTED, authority.actor,
                {"reason": reason}, "Art. 13",
            )  # fmt: skip


def visible_to(viewer: Principal, row) -> bool:
    """The role rule of every offering's list: consumers see published ones, operators
    their own, providers and reviewers none, authorities and auditors all."""
    if viewer.role is Role.CONSUMER:
        return bool(row.status == ProductState.PUBLISHED.value)
    if viewer.role is Role.OPERATOR:
        return bool(row.operator_id == viewer.id)
    return viewer.role not in (Role.PROVIDER, Role.REVIEWER)


PRODUCTS = Lifecycle(verify_products, "verification product", "verify", "verification")


def product_row(conn: Connection, name: str):
    return PRODUCTS.row(conn, name)


def move_product(
    platform: Platform,
    conn: Connection,
    name: str,
    new: ProductState,
    actor: Actor,
    details: Mapping[str, Any],
    article: str,
    **values: Any,
) -> None:
    PRODUCTS.move(platform, conn, name, new, actor, details, article, **values)


def require_product_authority(conn: Connection, authority: Principal, row, action: str) -> None:
    agreement = conn.execute(select(agreements).where(agreements.c.id == row.agreement_id)).first()
    if agreement is None:
        raise NotFound(f"no agreement {row.agreement_id}")
    require_authority(authority, agreement.jurisdiction, action, "Art. 13")


def latest_versions(
    conn: Connection, platform: Platform, tables: Sequence[str], agreement_id: int | None
) -> dict:
    """The newest version of each table, as the product's agreement may read it: a
    county agreement's index holds its county's rows only (Art. 5)."""
    return {t: scoped(conn, platform, get_version(conn, platform, t), agreement_id) for t in tables}


def approve(platform: Platform, authority: Principal, name: str) -> dict[str, Any]:
    """Publish a defined (or withdrawn) product: admit again, build the index, publish."""
    require_role(
        authority, Role.AUTHORITY, action="approve verification products", article="Art. 13"
    )
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        row = product_row(conn, name)
        require_product_authority(conn, authority, row, "approve verification products")
        if not may_move(ProductState(row.status), ProductState.PUBLISHED):
            raise Conflict(f"verification product '{name}' is {row.status}; it cannot be approved")
        definition = Definition.from_dict(json.loads(row.definition_json))
        definition.require_misses()
        rule = admit_definition(conn, platform, definition)
        may_run(conn, by_id(conn, row.operator_id), rule.tables, KIND, columns=rule.columns)
        versions = latest_versions(conn, platform, rule.tables, row.agreement_id)
    built = build(platform, rule, versions, secret)
    definition.require_misses(built.default_code)  # an unknown subject's code is a miss
    with platform.store.transaction() as conn:
        move_product(
            platform,
            conn,
            name,
            ProductState.PUBLISHED,
            authority.actor,
            {"versions": dict(built.versions), "index_rows": built.rows, "codes": definition.codes},
            "Art. 13",
            approved_by=authority.id,
            index_path=built.path,
            index_versions_json=json.dumps(dict(built.versions)),
        )
    return {
        "name": name,
        "state": ProductState.PUBLISHED.value,
        "versions": dict(built.versions),
        "index_rows": built.rows,
        "build_seconds": round(built.seconds, 3),
    }


def reject(platform: Platform, authority: Principal, name: str, reason: str) -> None:
    PRODUCTS.reject(platform, authority, name, reason)


def list_products(platform: Platform, viewer: Principal) -> list[dict]:
    """Consumers see published products; operators their own; the city authority and
    auditors all; a county authority those made under its county's agreements (Art. 5)."""
    with platform.store.read() as conn:
        rows = conn.execute(select(verify_products).order_by(verify_products.c.name)).all()
        scope = scope_of(conn, viewer)
        mine = scope.verifications if scope is not None else None
    out = []
    for row in rows:
        if (mine is not None and row.name not in mine) or not visible_to(viewer, row):
            continue
        definition = json.loads(row.definition_json)
        out.append(
            {
                "name": row.name,
                "state": row.status,
                "dataset": definition["dataset"],
                "keys": definition["keys"],
                "codes": definition["codes"],
                "description": definition["description"],
                "versions": json.loads(row.index_versions_json or "{}"),
            }
        )
    return out


def unblock(platform: Platform, authority: Principal, consumer: str, reason: str) -> None:
    """Lift the enumeration defence's block (or throttle) of a consumer: a consumer's
    standing spans every product of the platform, so this is the city authority's act."""
    require_city(authority, "lift verification blocks", "Art. 19")
    with platform.store.transaction() as conn:
        who_ = by_name(conn, consumer, Role.CONSUMER)
        conn.execute(verify_standing.delete().where(verify_standing.c.consumer_id == who_.id))
        platform.record(
            conn,
            authority.actor,
            "verify.unblocked",
            f"principal:{who_.name}",
            {"reason": reason},
            "Art. 19",
        )
