"""Data grants in the store, and the one question every job asks of them.

:func:`may_run` is the platform's single policy gate for "may this operator
run this kind of job on these datasets now?" (Art. 13, 14, 24). It loads the
operator's grants and the terms of the agreements they were made under, and
asks the pure :func:`policies.access.decide`. Grants come from approved data
requests under an agreement (``sandbox.workflow.requests``), or, on the
platform's host only, directly from the city authority (``sandbox grant add``, no
agreement: for tests and recovery; never over the API, recorded as ``grant.direct``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.access import GRANTABLE_FAMILIES, JOB_KINDS, Grant, GrantStatus, decide
from policies.disclosure import DisclosureParams
from policies.errors import InputError, PolicyRefusal
from policies.suggest import did_you_mean
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_name, require_role
from sandbox.core.store import datasets, grants, inserted_id, principals
from sandbox.data.vault import get_version
from sandbox.registry.base import parse_time
from sandbox.registry.jurisdiction import grant_place, require_city, require_covers, scope_of
from sandbox.registry.terms import terms_of


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _from_row(row, dataset_name: str) -> Grant:
    columns = json.loads(row.columns_json) if row.columns_json else None
    return Grant(
        id=row.id,
        operator_id=row.operator_id,
        dataset=dataset_name,
        valid_from=_parse_time(row.valid_from),
        valid_until=_parse_time(row.valid_until),
        status=GrantStatus(row.status),
        columns=frozenset(columns) if columns is not None else None,
        extra_aggregates=frozenset(json.loads(row.extra_aggregates_json)),
        aggregate_expressions=bool(row.aggregate_expressions),
        job_kinds=frozenset(json.loads(row.job_kinds_json)),
        disclosure=json.loads(row.disclosure_json),
        agreement_id=row.agreement_id,
        review_required=bool(row.review_required),
    )


def grants_of(conn: Connection, operator_id: int) -> list[Grant]:
    stmt = (
        select(grants, datasets.c.name.label("dataset_name"))
        .join(datasets, datasets.c.id == grants.c.dataset_id)
        .where(grants.c.operator_id == operator_id)
        .order_by(grants.c.id)
    )
    return [_from_row(r, r.dataset_name) for r in conn.execute(stmt)]


def list_grants(conn: Connection, viewer: Principal) -> list[dict]:
    """The grants a principal may see, each with the job kinds it covers.

    An operator sees its own grants, a provider the grants on its datasets, the city
    authority and auditors every grant (Art. 14), a county authority the grants made
    under its county's agreements (Art. 5); other roles are refused.
    """
    require_role(
        viewer,
        Role.OPERATOR,
        Role.PROVIDER,
        Role.AUTHORITY,
        Role.AUDITOR,
        action="list grants",
        article="Art. 14",
    )
    stmt = (
        select(grants, datasets.c.name.label("dataset_name"), principals.c.name.label("operator"))
        .join(datasets, datasets.c.id == grants.c.dataset_id)
        .join(principals, principals.c.id == grants.c.operator_id)
        .order_by(grants.c.id)
    )
    if viewer.role is Role.OPERATOR:
        stmt = stmt.where(grants.c.operator_id == viewer.id)
    elif viewer.role is Role.PROVIDER:
        stmt = stmt.where(datasets.c.provider_id == viewer.id)
    elif (scope := scope_of(conn, viewer)) is not None:
        stmt = stmt.where(grants.c.id.in_(scope.grants))
    now = datetime.now(UTC)
    rows = []
    for row in conn.execute(stmt):
        grant = _from_row(row, row.dataset_name)
        in_term = grant.valid_from <= now < grant.valid_until
        rows.append(
            {
                "id": grant.id,
                "operator": row.operator,
                "dataset": grant.dataset,
                "kinds": sorted(grant.job_kinds),
                "columns": sorted(grant.columns) if grant.columns is not None else "all",
                "extra_aggregates": sorted(grant.extra_aggregates),
                "aggregate_expressions": grant.aggregate_expressions,
                "disclosure": dict(grant.disclosure),
                "valid_from": grant.valid_from.isoformat(),
                "valid_until": grant.valid_until.isoformat(),
                "status": grant.status.value,
                "in_term": in_term,
                "agreement": grant.agreement_id,
                "review_required": grant.review_required,
            }
        )
    return rows


def may_run(
    conn: Connection,
    operator: Principal,
    dataset_names: Sequence[str],
    job_kind: str,
    now: datetime | None = None,
    columns: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Grant]:
    """The grant covering each dataset, or a PolicyRefusal naming rule and article.

    A grant made under an agreement is usable only while the agreement is active,
    in its term and covers the dataset, job kind (and, if named, the columns).
    """
    require_role(operator, Role.OPERATOR, action="run jobs", article="Art. 14")
    mine = grants_of(conn, operator.id)
    return decide(
        mine,
        operator.id,
        dataset_names,
        job_kind,
        now or datetime.now(UTC),
        terms_of(conn, (g.agreement_id for g in mine)),
        columns,
    )


def grants_in_use(
    conn: Connection, operator: Principal, job_kind: str, now: datetime
) -> dict[str, Grant]:
    """For each dataset the operator holds a grant for, the grant a job of this kind
    would run under at ``now``: the one :func:`may_run` picks. Where none is usable,
    the one ending last stands in; a job that uses that dataset is then refused by
    :func:`may_run`, which names why.

    A job's columns are admitted against these grants, so the grant a job is
    admitted against is the grant it runs under: a wider grant that is suspended,
    out of its term or for another job kind never widens what a job may read.
    """
    mine = grants_of(conn, operator.id)
    terms = terms_of(conn, (g.agreement_id for g in mine))
    chosen: dict[str, Grant] = {}
    for name in dict.fromkeys(g.dataset for g in mine):
        try:
            chosen[name] = decide(mine, operator.id, [name], job_kind, now, terms)[name]
        except PolicyRefusal:
            chosen[name] = max((g for g in mine if g.dataset == name), key=lambda g: g.valid_until)
    return chosen


def _check_kinds(extra_aggregates: Sequence[str], job_kinds: Sequence[str]) -> None:
    for family in extra_aggregates:
        if family not in GRANTABLE_FAMILIES:
            raise InputError(
                f"aggregate '{family}' cannot be granted; "
                + did_you_mean(family, GRANTABLE_FAMILIES)
            )
    for kind in job_kinds:
        if kind not in JOB_KINDS:
            raise InputError(f"unknown job kind '{kind}'; " + did_you_mean(kind, JOB_KINDS))


def _term(start: str | None, until: str) -> tuple[datetime, datetime]:
    """A grant's term; a bare date as its end takes in the whole of that day
    (:func:`sandbox.registry.base.parse_time`, as for agreements and deadlines)."""
    valid_from = parse_time(start, "--from") if start else datetime.now(UTC)
    valid_until = parse_time(until, "--until", end=True)
    if valid_until <= valid_from:
        raise InputError(
            "the grant's term must end after it starts: give --until later than --from (Art. 13)",
            article="Art. 13",
        )
    return valid_from, valid_until


def add_grant(
    platform: Platform,
    authority: Principal,
    operator_name: str,
    dataset_name: str,
    *,
    until: str,
    start: str | None = None,
    columns: Sequence[str] | None = None,
    extra_aggregates: Sequence[str] = (),
    aggregate_expressions: bool = False,
    job_kinds: Sequence[str] = ("sql_aggregate",),
    disclosure: dict | None = None,
) -> int:
    """The city authority grants an operator use of a dataset for a term, outside the
    workflow: no notice, review, agreement or provider approval (Art. 13, 14 require
    them). A host-only shortcut for tests and recovery: no HTTP route calls it, the
    command runs without ``--server`` only, and the ledger records it as
    ``grant.direct``, apart from the ``grant.add`` of an approved data request.

    A direct grant is an act of the city authority: datasets are the city's, and a
    county authority grants only through its county's agreements (Art. 5).
    """
    require_city(authority, "grant data use directly", "Art. 14")
    _check_kinds(extra_aggregates, job_kinds)
    valid_from, valid_until = _term(start, until)
    overrides = dict(disclosure or {})
    DisclosureParams().tightened(overrides)  # validates names and values
    with platform.store.transaction() as conn:
        operator = by_name(conn, operator_name, Role.OPERATOR)
        version = get_version(conn, platform, dataset_name)
        if columns is not None:
            unknown = [c for c in columns if c not in version.classification.columns]
            if unknown:
                raise InputError(
                    f"column '{unknown[0]}' is not in dataset '{dataset_name}'; "
                    + did_you_mean(unknown[0], version.classification.columns)
                )
        inserted = conn.execute(
            grants.insert().values(
                operator_id=operator.id,
                dataset_id=version.dataset_id,
                columns_json=json.dumps(sorted(columns)) if columns is not None else None,
                extra_aggregates_json=json.dumps(sorted(extra_aggregates)),
                aggregate_expressions=aggregate_expressions,
                job_kinds_json=json.dumps(sorted(job_kinds)),
                disclosure_json=json.dumps(overrides),
                valid_from=valid_from.isoformat(),
                valid_until=valid_until.isoformat(),
                status=GrantStatus.ACTIVE.value,
                granted_by=authority.id,
                created_at=now_utc(),
            )
        )
        grant_id = inserted_id(inserted)
        platform.record(
            conn,
            authority.actor,
            "grant.direct",
            f"grant:{grant_id}",
            {
                "direct": True,
                "agreement": None,
                "operator": operator.name,
                "dataset": dataset_name,
                "columns": sorted(columns) if columns is not None else "all",
                "extra_aggregates": sorted(extra_aggregates),
                "job_kinds": sorted(job_kinds),
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
                "disclosure": overrides,
            },
            "Art. 14",
        )
    return grant_id


def set_grant_status(
    platform: Platform, authority: Principal, grant_id: int, status: GrantStatus, reason: str
) -> None:
    """Suspend, end or restore a grant: an authority covering the grant's agreement;
    the city authority for a direct grant (Art. 5, 24)."""
    require_role(authority, Role.AUTHORITY, action="suspend or end grants", article="Art. 24")
    with platform.store.transaction() as conn:
        row = conn.execute(select(grants).where(grants.c.id == grant_id)).first()
        if row is None:
            raise InputError(f"no grant {grant_id}")
        require_covers(authority, grant_place(conn, grant_id), "suspend or end grants", "Art. 24")
        conn.execute(grants.update().where(grants.c.id == grant_id).values(status=status.value))
        platform.record(
            conn,
            authority.actor,
            f"grant.{status.value}",
            f"grant:{grant_id}",
            {"from": row.status, "reason": reason},
            "Art. 24",
        )
