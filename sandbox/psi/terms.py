"""The PSI terms of a dataset column (Art. 13), set by an authority for an agreement or a
direct grant: the mode, list sizes, the daily cap, the group dimensions and threshold."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.psi_match import (
    KIND,
    check_columns,
)
from policies.errors import (
    InputError,
    NotFound,
)
from policies.psi import (
    PsiMode,
    PsiTerms,
    parse_mode,
)
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import grants as grants_table
from sandbox.core.store import inserted_id
from sandbox.data.vault import get_version
from sandbox.psi.tables import psi_terms
from sandbox.registry.base import require_authority
from sandbox.registry.jurisdiction import grant_place, require_covers
from sandbox.registry.tables import agreements


def _terms_from_row(row) -> PsiTerms:
    return PsiTerms(
        id=row.id,
        dataset=row.dataset,
        column=row.column_name,
        mode=PsiMode(row.mode),
        min_items=row.min_items,
        max_items=row.max_items,
        daily_cap=row.daily_cap,
        group_dimensions=frozenset(json.loads(row.group_dimensions_json)),
        group_threshold=row.group_threshold,
        consent_required=bool(row.consent_required),
        agreement_id=row.agreement_id,
        grant_id=row.grant_id,
    )


def terms_for(conn: Connection, grant, dataset: str, column: str) -> PsiTerms | None:
    """The terms that apply through ``grant``: its agreement's, or its own if direct."""
    scope = (
        psi_terms.c.agreement_id == grant.agreement_id
        if grant.agreement_id is not None
        else psi_terms.c.grant_id == grant.id
    )
    row = conn.execute(
        select(psi_terms).where(
            scope, psi_terms.c.dataset == dataset, psi_terms.c.column_name == column
        )
    ).first()
    return _terms_from_row(row) if row is not None else None


def set_terms(
    platform: Platform,
    authority: Principal,
    *,
    dataset: str,
    column: str,
    agreement_id: int | None = None,
    grant_id: int | None = None,
    mode: str | PsiMode = PsiMode.CARDINALITY,
    min_items: int | None = None,
    max_items: int | None = None,
    daily_cap: int | None = None,
    group_dimensions: Sequence[str] = (),
    group_threshold: int | None = None,
    consent_required: bool = False,
) -> int:
    """An authority sets (or replaces) the PSI terms of one dataset column (Art. 13)."""
    require_role(authority, Role.AUTHORITY, action="set PSI terms", article="Art. 13")
    settings = platform.settings

    def given_or(value, setting: str):
        return value if value is not None else settings.value(setting)

    terms = PsiTerms(
        dataset=dataset,
        column=column,
        mode=parse_mode(mode),
        min_items=given_or(min_items, "psi.min_items"),
        max_items=given_or(max_items, "psi.max_items"),
        daily_cap=given_or(daily_cap, "psi.daily_cap"),
        group_dimensions=frozenset(group_dimensions),
        group_threshold=given_or(group_threshold, "psi.group_threshold"),
        consent_required=consent_required,
        agreement_id=agreement_id,
        grant_id=grant_id,
    )
    if terms.max_items > settings.psi.max_items:
        raise InputError(
            f"max_items {terms.max_items} is over the platform's psi.max_items "
            f"({settings.psi.max_items})"
        )
    with platform.store.transaction() as conn:
        version = get_version(conn, platform, dataset)
        check_columns(version.classification, column, None)
        for dim in terms.group_dimensions:
            check_columns(version.classification, column, dim)
        if agreement_id is not None:
            _check_agreement_covers(conn, authority, terms, agreement_id)
            where, subject = psi_terms.c.agreement_id == agreement_id, f"agreement:{agreement_id}"
        else:
            row = conn.execute(select(grants_table).where(grants_table.c.id == grant_id)).first()
            if row is None or row.dataset_id != version.dataset_id:
                raise NotFound(f"no grant {grant_id} for dataset '{dataset}'")
            assert grant_id is not None  # the terms name one agreement or one grant (validated)
            # a direct grant's terms are the city's; a grant under an agreement, its place's
            require_covers(authority, grant_place(conn, grant_id), "set PSI terms", "Art. 13")
            where, subject = psi_terms.c.grant_id == grant_id, f"grant:{grant_id}"
        terms_id = _store_terms(conn, authority, terms, where)
        platform.record(
            conn,
            authority.actor,
            "psi.terms",
            subject,
            terms.to_dict() | {"id": terms_id},
            "Art. 13",
        )
    return terms_id


def _check_agreement_covers(
    conn: Connection, authority: Principal, terms: PsiTerms, agreement_id: int
) -> None:
    """The agreement exists, is the authority's to rule on, and covers the dataset, the
    columns (the key and every group dimension) and PSI jobs (Art. 13)."""
    row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if row is None:
        raise NotFound(f"no agreement {agreement_id}")
    require_authority(authority, row.jurisdiction, "set PSI terms", "Art. 13")
    scope = json.loads(row.scope_json)
    if terms.dataset not in scope["datasets"]:
        raise InputError(
            f"dataset '{terms.dataset}' is outside agreement {agreement_id}", article="Art. 13"
        )
    allowed = scope["datasets"][terms.dataset]
    used = [terms.column, *sorted(terms.group_dimensions)]
    outside = [c for c in used if allowed is not None and c not in allowed]
    if outside:
        raise InputError(
            f"column '{outside[0]}' is outside agreement {agreement_id}", article="Art. 13"
        )
    if KIND not in scope["job_kinds"]:
        raise InputError(
            f"agreement {agreement_id} does not include '{KIND}' jobs", article="Art. 13"
        )


def _store_terms(conn: Connection, authority: Principal, terms: PsiTerms, where) -> int:
    """Insert the terms, or replace those of the same owner, dataset and column."""
    values = {
        "mode": terms.mode.value,
        "min_items": terms.min_items,
        "max_items": terms.max_items,
        "daily_cap": terms.daily_cap,
        "group_dimensions_json": json.dumps(sorted(terms.group_dimensions)),
        "group_threshold": terms.group_threshold,
        "consent_required": terms.consent_required,
        "set_by": authority.id,
        "created_at": now_utc(),
    }
    existing = conn.execute(
        select(psi_terms.c.id).where(
            where, psi_terms.c.dataset == terms.dataset, psi_terms.c.column_name == terms.column
        )
    ).first()
    if existing is not None:
        conn.execute(psi_terms.update().where(psi_terms.c.id == existing.id).values(**values))
        return existing.id
    inserted = conn.execute(
        psi_terms.insert().values(
            agreement_id=terms.agreement_id,
            grant_id=terms.grant_id,
            dataset=terms.dataset,
            column_name=terms.column,
            **values,
        )
    )
    return inserted_id(inserted)
