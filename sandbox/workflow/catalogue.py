"""The catalogue of released products (Art. 17): what the operators offer, for every
signed-in principal.

Art. 17 wants the products of public-data operation known, so consumers find them and
the public sees what is made from its data. The catalogue lists each product in force,
of every kind:

* ``report``: a released job's product, not disposed of under its agreement's clause
  (deleted, or handed to the authority: :mod:`sandbox.registry.disposal`);
* ``verification``: a published verification product (a defined, rejected or withdrawn
  one is not on offer);
* ``scoring``: a published scoring service over a passed model
  (:mod:`sandbox.models.services`), the form in which models reach consumers.

An entry names the product's id, kind, title (a report's: the scenario of the
application its agreement passed; an offering's: its description), operator, the
datasets it was derived from (names only) and when it was released. It holds no value:
no cell of a report, no code an index answers, not the SQL of a job (a literal in it
may be a value). Withheld, refused and held outputs made no product and are not in it.
Being listed grants nothing: a report reaches the consumers it is delivered to (Art. 15),
offerings are called by consumers under their own rules.

Newest release first, ``limit`` entries at a time; ``next_before`` (opaque: the release
time, kind and id of the page's last entry) asks for the next page. The three kinds
live in three tables, so the catalogue is gathered whole and then cut: products in
force are few next to the jobs that made them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from policies.errors import InputError
from policies.job_states import JobState
from policies.verification import ProductState
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.core.store import grants, jobs, metadata, principals, products
from sandbox.registry.tables import agreements, applications, product_dispositions

MAX_PAGE = 500
ARTICLE = "Art. 17"


def _names(conn: Connection) -> dict[int, str]:
    return {r.id: r.name for r in conn.execute(select(principals.c.id, principals.c.name))}


def _scenarios(conn: Connection) -> dict[int, str]:
    """Grant id -> the scenario of the application its agreement passed (Art. 11)."""
    rows = conn.execute(
        select(grants.c.id, applications.c.scenario)
        .join(agreements, agreements.c.id == grants.c.agreement_id)
        .join(applications, applications.c.id == agreements.c.application_id)
    )
    return {r.id: r.scenario for r in rows}


def _reports(conn: Connection, names: dict[int, str]) -> Iterator[dict]:
    """Released job products not disposed of (deleted or handed over)."""
    disposed = set(conn.execute(select(product_dispositions.c.product_id)).scalars())
    scenarios = _scenarios(conn)
    rows = conn.execute(
        select(products.c.id, products.c.operator_id, products.c.created_at, jobs.c.id.label("job"),
               jobs.c.inputs_json)
        .join(jobs, jobs.c.id == products.c.job_id)
        .where(jobs.c.status == JobState.RELEASED.value)
    )  # fmt: skip
    for r in rows:
        if r.id in disposed:
            continue
        inputs = json.loads(r.inputs_json or "[]")
        scenario = next((scenarios[i["grant"]] for i in inputs if i.get("grant") in scenarios), "")
        yield _entry(r.id, "report", scenario or f"the product of job {r.job}",
                     names[r.operator_id], [i["dataset"] for i in inputs], r.created_at)  # fmt: skip


def _feature(name: str) -> Table:
    """A table of the verification or models package, read by name from the store's
    metadata (``Store._migrate`` loads them all): those packages import the workflow,
    so the workflow does not import them."""
    return metadata.tables[name]


def _verifications(conn: Connection, names: dict[int, str]) -> Iterator[dict]:
    verify_products = _feature("verify_products")
    rows = conn.execute(
        select(verify_products).where(verify_products.c.status == ProductState.PUBLISHED.value)
    )
    for r in rows:
        definition = json.loads(r.definition_json)
        tables = list(json.loads(r.index_versions_json or "{}")) or [definition["dataset"]]
        yield _entry(r.name, "verification", definition["description"], names[r.operator_id],
                     tables, r.updated_at)  # fmt: skip


def _scoring(conn: Connection, names: dict[int, str]) -> Iterator[dict]:
    score_services, models = _feature("score_services"), _feature("models")
    rows = conn.execute(
        select(score_services, models.c.versions_json)
        .join(models, models.c.name == score_services.c.model)
        .where(score_services.c.status == ProductState.PUBLISHED.value)
    )
    for r in rows:
        definition = json.loads(r.definition_json)
        yield _entry(r.name, "scoring", definition["description"], names[r.operator_id],
                     list(json.loads(r.versions_json)), r.updated_at)  # fmt: skip


def _entry(
    ident: str, kind: str, title: str, operator: str, datasets: list[str], released_at: str
) -> dict:
    return {"id": ident, "kind": kind, "title": title, "operator": operator,
            "datasets": sorted(set(datasets)), "released_at": released_at}  # fmt: skip


def _cursor(entry: dict) -> str:
    return f"{entry['released_at']}|{entry['kind']}|{entry['id']}"


def _key(entry: dict) -> tuple[str, str, str]:
    return entry["released_at"], entry["kind"], entry["id"]


def _parse(before: str) -> tuple[str, str, str]:
    parts = before.split("|")
    if len(parts) != 3 or not all(parts):
        raise InputError(
            f"--before '{before}' is not a catalogue position; pass the next_before of the "
            "previous page",
            article=ARTICLE,
        )
    return parts[0], parts[1], parts[2]


def catalogue(
    platform: Platform, viewer: Principal, *, limit: int = 50, before: str | None = None
) -> dict:
    """One page of the catalogue, newest release first: items, total, next_before (None on
    the last page). Every signed-in principal reads it (``viewer`` is who asked)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"--limit must be between 1 and {MAX_PAGE}, not {limit}")
    after = _parse(before) if before is not None else None
    with platform.store.read() as conn:
        names = _names(conn)
        entries = [*_reports(conn, names), *_verifications(conn, names), *_scoring(conn, names)]
    entries.sort(key=_key, reverse=True)
    rest = [e for e in entries if after is None or _key(e) < after]
    page = rest[:limit]
    more = len(rest) > limit
    return {"items": page, "total": len(entries),
            "next_before": _cursor(page[-1]) if more else None}  # fmt: skip
