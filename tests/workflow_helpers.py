"""Builders for workflow tests: the cast of principals and a flow up to any stage.

Everything goes through the real workflow functions against the real store of
the ``platform`` fixture; nothing is inserted behind their back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from policies.workflow import Disposal
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.workflow import agreements, applications, notices, requests, reviews

NOW = datetime.now(UTC)
COUNTY = "370811"  # Rencheng district
OTHER_COUNTY = "370826"


@dataclass
class Cast:
    platform: Platform
    city: Principal
    county: Principal
    other_county: Principal
    r1: Principal
    r2: Principal
    r3_same_org: Principal
    operator: Principal
    rival: Principal
    consumer: Principal
    auditor: Principal
    provider: Principal
    tokens: dict[str, str] = field(default_factory=dict)


def make_cast(platform: Platform, make_principal, provider: Principal) -> Cast:
    made = {}
    tokens = {}
    for name, role, org, jur in [
        ("city", Role.AUTHORITY, "Jining Big Data Bureau", "city"),
        ("county", Role.AUTHORITY, "Rencheng Big Data Office", COUNTY),
        ("other_county", Role.AUTHORITY, "Liangshan Big Data Office", OTHER_COUNTY),
        ("r1", Role.REVIEWER, "Shandong University", None),
        ("r2", Role.REVIEWER, "Qufu Normal University", None),
        ("r3_same_org", Role.REVIEWER, "OpCo", None),
        ("operator", Role.OPERATOR, "OpCo", None),
        ("rival", Role.OPERATOR, "RivalCo", None),
        ("consumer", Role.CONSUMER, "Jining Bank", None),
        ("auditor", Role.AUDITOR, "Cyberspace Office", None),
    ]:
        made[name], tokens[name] = make_principal(name, role, org=org, jurisdiction=jur)
    return Cast(platform=platform, provider=provider, tokens=tokens, **made)


@pytest.fixture(name="cast")
def cast_fixture(platform, make_principal, provider, pums_dataset) -> Iterator[Cast]:
    """The fixture ``cast``: the cast on a platform holding pums; the ledger verifies when
    the test ends. A test module takes it by importing ``cast_fixture``."""
    c = make_cast(platform, make_principal, provider)
    yield c
    verify_ledger(platform)


def publish(cast: Cast, *, by=None, jurisdiction=None, deadline=None, **rule) -> int:
    from policies.workflow import PassRule

    return notices.publish(
        cast.platform,
        by or cast.city,
        title="Income statistics for lending",
        domain="finance",
        scenario="regional income aggregates for credit risk",
        datasets=["pums"],
        conditions="licensed financial data firm",
        deadline=deadline or NOW + timedelta(days=30),
        jurisdiction=jurisdiction,
        pass_rule=PassRule(**rule),
    )


def apply(cast: Cast, notice_id: int, operator=None, **changes) -> int:
    values = dict(
        scenario="income by education for lending",
        datasets={"pums": ["educ", "income", "sex", "pid", "age"]},
        security_measures="ISO 27001, staff training",
        security_officer="Wang Li",
        incident_plan="call the authority within one hour; stop all jobs",
        job_kinds=["sql_aggregate"],
        product_kinds=["report"],
    )
    values.update(changes)
    return applications.apply(cast.platform, operator or cast.operator, notice_id, **values)


def passed_application(cast: Cast, *, authority=None, **notice_kw) -> int:
    authority = authority or cast.city
    nid = publish(cast, by=authority, **notice_kw)
    aid = apply(cast, nid)
    reviews.appoint(cast.platform, authority, aid, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(cast.platform, reviewer, aid, capability=80, scenario=75, security=90)
    return aid


def sign(
    cast: Cast,
    application_id: int,
    *,
    authority=None,
    start=None,
    until=None,
    disposal=Disposal.DELETE,
    review_required=False,
    **extra,
) -> int:
    return agreements.sign(
        cast.platform,
        authority or cast.city,
        application_id,
        valid_from=start or NOW - timedelta(days=1),
        valid_until=until or NOW + timedelta(days=365),
        rights_duties="use pums for aggregates only",
        security_requirements="no raw rows leave the sandbox",
        exit_conditions="on breach or at term end",
        breach_liability="suspension and termination",
        disposal=disposal,
        review_required=review_required,
        **extra,
    )


def granted(cast: Cast, **sign_kw) -> tuple[int, int]:
    """An active agreement and an approved grant on pums; returns (agreement, grant)."""
    authority = sign_kw.pop("authority", None)
    notice_kw = sign_kw.pop("notice_kw", {})
    if authority is not None and authority.jurisdiction != "city":
        ensure_counties(cast)  # a county agreement reads only data it can cut (Art. 5)
    aid = passed_application(cast, authority=authority, **notice_kw)
    agreement_id = sign(cast, aid, authority=authority, **sign_kw)
    rid = requests.request_data(
        cast.platform, cast.operator, agreement_id, "pums", purpose="income by education"
    )
    grant_id = requests.approve(cast.platform, cast.provider, rid)
    return agreement_id, grant_id


def verify_ledger(platform: Platform) -> int:
    with platform.store.read() as conn:
        return ledger.verify(conn, platform.key.public_key()).entries


def entries(platform: Platform, subject: str) -> list[dict]:
    with platform.store.read() as conn:
        return ledger.query(conn, subject=subject)


def county_of(pid: int) -> str:
    """The county each pums person lives in, for tests of county agreements: two of three
    in ``COUNTY``, the rest in ``OTHER_COUNTY`` (pums itself has no place column)."""
    return OTHER_COUNTY if pid % 3 == 0 else COUNTY


def register_pums_with_counties(cast: Cast):
    """A new version of pums with a ``county`` column (:func:`county_of`) that its provider
    declares as the county column (Art. 5): a county agreement's jobs read its rows only."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from policies.classes import Classification
    from sandbox.data import vault
    from tests.conftest import DATA, PUMS_CLASSIFICATION

    table = pacsv.read_csv(DATA / "pums_1000_pid.csv")
    counties = [county_of(int(p)) for p in table.column("pid").to_pylist()]
    table = table.append_column("county", pa.array(counties))
    path = cast.platform.home.parent / "pums_with_counties.csv"
    pacsv.write_csv(table, path)
    declared = {
        **PUMS_CLASSIFICATION,
        "columns": {**PUMS_CLASSIFICATION["columns"], "county": "dimension"},
        "domains": {"county": {"codes": [COUNTY, OTHER_COUNTY]}},
        "county": {"column": "county"},
    }
    classification = Classification.from_dict(declared)
    return vault.register(cast.platform, cast.provider, "pums", str(path), classification).version


def ensure_counties(cast: Cast) -> None:
    """pums with its county column (:func:`register_pums_with_counties`), unless the
    latest version already declares one."""
    from sandbox.data.vault import get_version

    with cast.platform.store.read() as conn:
        declared = get_version(conn, cast.platform, "pums").classification.county
    if declared is None:
        register_pums_with_counties(cast)
