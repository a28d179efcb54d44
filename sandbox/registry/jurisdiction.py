"""What an authority's jurisdiction covers (Art. 5): the one rule of every read and write.

An authority acts for ``city`` or for one county (a 6-digit code). The city
authority and the auditors see everything their role sees; a county authority
acts on, and reads, only what belongs to its county. Every object takes the
jurisdiction of what it was made under:

- a notice has its own; an application takes its notice's, a qualification review
  its application's;
- an agreement has its own (its notice's, fixed at signing); a data request, an
  evaluation, an evaluation material, a privacy budget, PSI terms and a verification
  product take their agreement's;
- a grant takes its agreement's. A grant an authority made directly (``grant add``,
  no agreement) is the **city's**, and so are PSI terms set on it;
- a job takes the jurisdiction of the grants it ran under when they all belong to
  one place; a job under a direct grant, under grants of more than one place, or
  with no grant at all (refused or failed before the grants gate) is the city's;
- a released product, its output review, checkers and votes, and feedback on it
  take their job's; a PSI session its terms';
- a dataset has none: the registry of datasets is the city's. So granting a
  dataset directly, and the terms of such a grant, are acts of the city authority;
  a county authority acts only through the agreements signed in its county, whose
  data requests the dataset's provider (or an authority covering the agreement)
  approves.

Writes ask :func:`require_covers` (an object's place) or :func:`require_city` (a
city-level act); single reads ask :func:`require_covers` too; lists and the
ledger are filtered with :class:`CountyScope`, which :func:`scope_of` gives for a
county authority only (``None``: no filter). The ledger shows a county authority
the entries whose subject belongs to its county, and the entries it wrote itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from policies.errors import PermissionDenied
from policies.workflow import check_jurisdiction, covers
from sandbox.core import ledger as ledger_mod
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import grants, jobs, metadata, products
from sandbox.registry.tables import (
    agreements,
    applications,
    checker_appointments,
    data_requests,
    evaluation_materials,
    evaluations,
    feedback,
    notices,
    output_reviews,
    output_votes,
    review_appointments,
)

CITY = "city"
ARTICLE = "Art. 5"


# --- the rule for one object ------------------------------------------------------------------


def require_covers(principal: Principal, place: str, action: str, article: str) -> None:
    """An authority whose jurisdiction covers ``place`` (a county code or ``city``)."""
    require_role(principal, Role.AUTHORITY, action=action, article=article)
    check_jurisdiction(principal.name, principal.jurisdiction, place)


def require_city(principal: Principal, action: str, article: str) -> None:
    """A city-level act: only the city authority (Art. 5)."""
    require_role(principal, Role.AUTHORITY, action=action, article=article)
    if principal.jurisdiction != CITY:
        raise PermissionDenied(
            f"{principal.name} acts for county {principal.jurisdiction}; only the city "
            f"authority may {action}: a county authority acts through the agreements signed "
            f"in its county ({ARTICLE})",
            article=ARTICLE,
            code="outside_jurisdiction",
        )


def _agreement_places(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute(
        select(agreements.c.id, agreements.c.jurisdiction).where(agreements.c.id.in_(wanted))
    )
    return {r.id: r.jurisdiction for r in rows}


def _grant_places(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute(
        select(grants.c.id, grants.c.agreement_id).where(grants.c.id.in_(wanted))
    ).all()
    places = _agreement_places(conn, (r.agreement_id for r in rows))
    return {r.id: places.get(r.agreement_id, CITY) for r in rows}


def agreement_place(conn: Connection, agreement_id: int | None) -> str:
    """The agreement's jurisdiction; ``city`` for none (a direct grant's product)."""
    return (
        CITY
        if agreement_id is None
        else _agreement_places(conn, [agreement_id]).get(agreement_id, CITY)
    )


def grant_place(conn: Connection, grant_id: int) -> str:
    """The grant's agreement's jurisdiction; ``city`` for a direct grant."""
    return _grant_places(conn, [grant_id]).get(grant_id, CITY)


def _input_grants(inputs_json: str | None) -> list[int]:
    try:
        items = json.loads(inputs_json or "[]")
    except ValueError:
        return []
    return [i["grant"] for i in items if isinstance(i, dict) and i.get("grant") is not None]


def _one_place(grant_ids: list[int], places: Mapping[int, str]) -> str:
    found = {places.get(g, CITY) for g in grant_ids}
    return found.pop() if len(found) == 1 else CITY


def job_place(conn: Connection, job_id: int) -> str:
    """The place of the grants the job ran under, when they share one; else ``city``."""
    row = conn.execute(select(jobs.c.inputs_json).where(jobs.c.id == job_id)).first()
    ids = _input_grants(row.inputs_json if row is not None else None)
    return _one_place(ids, _grant_places(conn, ids))


def product_place(conn: Connection, product_id: str) -> str:
    row = conn.execute(select(products.c.job_id).where(products.c.id == product_id)).first()
    return job_place(conn, row.job_id) if row is not None else CITY


def operator_in_scope(conn: Connection, viewer: Principal, operator_id: int) -> bool:
    """Operator-wide reports and inspections: a county authority reaches an operator
    that holds an agreement of its county; the city authority every operator."""
    if viewer.jurisdiction == CITY:
        return True
    places = conn.execute(
        select(agreements.c.jurisdiction).where(agreements.c.operator_id == operator_id)
    ).scalars()
    return any(covers(viewer.jurisdiction, p) for p in places)


# --- filtering reads --------------------------------------------------------------------------


def _feature_table(name: str) -> Table | None:
    """A table another package declares on the store's metadata (``Store._migrate``
    loads them all before a platform opens); read by name to keep imports one way."""
    return metadata.tables.get(name)


class CountyScope:
    """The ids of every object of one county, worked out once per read (lazily)."""

    def __init__(self, conn: Connection, county: str, viewer: str = ""):
        self.conn = conn
        self.county = county
        self.viewer = viewer

    def _ids(self, table: Table, where) -> set:
        return set(self.conn.execute(select(table.c[_key(table)]).where(where)).scalars())

    @cached_property
    def agreements(self) -> set[int]:
        return self._ids(agreements, agreements.c.jurisdiction == self.county)

    @cached_property
    def notices(self) -> set[int]:
        return self._ids(notices, notices.c.jurisdiction == self.county)

    @cached_property
    def applications(self) -> set[int]:
        return self._ids(applications, applications.c.notice_id.in_(self.notices))

    @cached_property
    def reviews(self) -> set[int]:
        return self._ids(
            review_appointments, review_appointments.c.application_id.in_(self.applications)
        )

    @cached_property
    def grants(self) -> set[int]:
        return self._ids(grants, grants.c.agreement_id.in_(self.agreements))

    @cached_property
    def data_requests(self) -> set[int]:
        return self._ids(data_requests, data_requests.c.agreement_id.in_(self.agreements))

    @cached_property
    def evaluations(self) -> set[int]:
        return self._ids(evaluations, evaluations.c.agreement_id.in_(self.agreements))

    @cached_property
    def materials(self) -> set[int]:
        c = evaluation_materials.c
        return self._ids(evaluation_materials, c.agreement_id.in_(self.agreements))

    @cached_property
    def jobs(self) -> set[int]:
        rows = self.conn.execute(select(jobs.c.id, jobs.c.inputs_json)).all()
        mine = self.grants
        out = set()
        for row in rows:
            ids = _input_grants(row.inputs_json)
            if ids and all(g in mine for g in ids):
                out.add(row.id)
        return out

    @cached_property
    def products(self) -> set[str]:
        return self._ids(products, products.c.job_id.in_(self.jobs))

    @cached_property
    def output_reviews(self) -> set[int]:
        return self._ids(output_reviews, output_reviews.c.job_id.in_(self.jobs))

    @cached_property
    def checkers(self) -> set[int]:
        c = checker_appointments.c
        return self._ids(
            checker_appointments, c.agreement_id.in_(self.agreements) | c.job_id.in_(self.jobs)
        )

    @cached_property
    def output_votes(self) -> set[int]:
        return self._ids(output_votes, output_votes.c.review_id.in_(self.output_reviews))

    @cached_property
    def feedback(self) -> set[int]:
        return self._ids(feedback, feedback.c.product_id.in_(self.products))

    @cached_property
    def verifications(self) -> set[str]:
        table = _feature_table("verify_products")
        if table is None:
            return set()
        return self._ids(table, table.c.agreement_id.in_(self.agreements))

    @cached_property
    def psi_sessions(self) -> set[int]:
        terms, sessions = _feature_table("psi_terms"), _feature_table("psi_sessions")
        if terms is None or sessions is None:
            return set()
        mine = self._ids(
            terms, terms.c.agreement_id.in_(self.agreements) | terms.c.grant_id.in_(self.grants)
        )
        return self._ids(sessions, sessions.c.terms_id.in_(mine))

    # subject kind of a ledger entry -> (the set it is looked up in, how its id is read)
    _SUBJECTS: dict[str, tuple[str, Callable[[str], Any]]] = {
        "notice": ("notices", int),
        "application": ("applications", int),
        "review": ("reviews", int),
        "agreement": ("agreements", int),
        "data_request": ("data_requests", int),
        "evaluation": ("evaluations", int),
        "material": ("materials", int),
        "grant": ("grants", int),
        "job": ("jobs", int),
        "product": ("products", str),
        "output_review": ("output_reviews", int),
        "checker": ("checkers", int),
        "output_vote": ("output_votes", int),
        "feedback": ("feedback", int),
        "verification": ("verifications", str),
        "psi": ("psi_sessions", int),
    }

    def covers_subject(self, subject: str) -> bool:
        kind, _, ident = (subject or "").partition(":")
        known = self._SUBJECTS.get(kind)
        if known is None or not ident:
            return False
        attribute, parse = known
        try:
            key = parse(ident)
        except ValueError:
            return False
        return key in getattr(self, attribute)

    def covers_entry(self, entry: Mapping[str, Any]) -> bool:
        """A ledger entry about an object of the county, or one the viewer wrote."""
        if self.viewer and entry.get("actor") == self.viewer:
            return True
        return self.covers_subject(str(entry.get("subject", "")))


def _key(table: Table) -> str:
    return "name" if "name" in table.c and "id" not in table.c else "id"


def scope_of(conn: Connection, viewer: Principal) -> CountyScope | None:
    """The filter of a county authority's reads; ``None`` for everyone else (each
    read still applies its own role rule)."""
    if viewer.role is Role.AUTHORITY and viewer.jurisdiction != CITY:
        return CountyScope(conn, viewer.jurisdiction or "", viewer.name)
    return None


def read_ledger(conn: Connection, viewer: Principal, **filters: Any) -> list[dict]:
    """Ledger entries for an auditor or an authority: a county authority's are those of
    its county (:meth:`CountyScope.covers_entry`); ``limit`` counts what it is shown."""
    require_role(viewer, Role.AUDITOR, Role.AUTHORITY, action="read the ledger")
    scope = scope_of(conn, viewer)
    keep = scope.covers_entry if scope is not None else None
    return ledger_mod.query(conn, keep=keep, **filters)
