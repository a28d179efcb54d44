"""Builders for the PSI tests: small registries, an operator with a PSI grant or agreement.

Everything goes through the real functions (vault registration, grants, the
workflow, :func:`sandbox.psi.service.set_terms`) against the real store of a platform home.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from policies.classes import Classification
from policies.workflow import Disposal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.psi.terms import set_terms
from sandbox.workflow import agreements, applications, notices, requests, reviews

FIRMS = Classification.from_dict(
    {
        "entity_key": "code",
        # county is published with the register: PSI groups only by public columns
        "columns": {"code": "identifier", "county": "public", "capital": "measure"},
    }
)
PEOPLE = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {"pid": "identifier", "county": "dimension"},
        "formats": {"pid": "cn_resident_id"},
    }
)
COUNTIES = ("370811", "370812", "370826", "370830")


def firm_code(i: int) -> str:
    return f"91370800MA{i:08d}"


def write_firms(folder: Path, codes: list[str], name: str = "firms.csv") -> Path:
    """A CSV of firms: code, county (skewed: the last county is small), capital."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = ["code,county,capital"]
    for i, code in enumerate(codes):
        county = COUNTIES[3] if i % 50 == 0 else COUNTIES[i % 3]
        lines.append(f"{code},{county},{1000 + i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def register_firms(
    platform: Platform, provider: Principal, folder: Path, codes: list[str], name: str = "firms"
) -> vault.DatasetVersion:
    tag = abs(hash((len(codes), codes[0] if codes else "", codes[-1] if codes else "")))
    path = write_firms(folder, codes, f"{name}-{tag}.csv")
    uri = f"csv://{path}?text=code,county"
    return vault.register(platform, provider, name, uri, FIRMS).version


def psi_grant(
    platform: Platform,
    authority: Principal,
    operator: Principal,
    dataset="firms",
    column="code",
    **terms,
) -> int:
    """A direct grant with job kind psi_match, and PSI terms on ``column``."""
    grant_id = add_grant(
        platform,
        authority,
        operator.name,
        dataset,
        until=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
        job_kinds=("psi_match",),
    )
    set_terms(platform, authority, dataset=dataset, column=column, grant_id=grant_id, **terms)
    return grant_id


def psi_agreement(
    platform: Platform,
    authority: Principal,
    operator: Principal,
    provider: Principal,
    reviewers: list[Principal],
    dataset="firms",
) -> int:
    """An active agreement with psi_match on ``dataset`` and an approved data request."""
    now = datetime.now(UTC)
    notice = notices.publish(
        platform,
        authority,
        title="Customer matching",
        domain="finance",
        scenario="how many of our customers are registered",
        datasets=[dataset],
        conditions="licensed bank",
        deadline=now + timedelta(days=30),
    )
    application = applications.apply(
        platform,
        operator,
        notice,
        scenario="registry match",
        datasets={dataset: None},
        security_measures="MLPS 3",
        security_officer="Li Na",
        incident_plan="stop and report within one hour",
        job_kinds=["psi_match"],
        product_kinds=["report"],
    )
    reviews.appoint(platform, authority, application, [r.name for r in reviewers])
    for reviewer in reviewers:
        reviews.score(platform, reviewer, application, capability=80, scenario=80, security=80)
    agreement_id = agreements.sign(
        platform,
        authority,
        application,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=365),
        rights_duties="match only",
        security_requirements="keys stay local",
        exit_conditions="term end",
        breach_liability="suspension",
        disposal=Disposal.DELETE,
    )
    request_id = requests.request_data(platform, operator, agreement_id, dataset, purpose="match")
    requests.approve(platform, provider, request_id)
    return agreement_id


# --- count sessions (the roles swapped): persons with a public county on a declared grid ---

DECLARED_COUNTIES = (*COUNTIES, "370899")  # the last is declared and holds nobody
PERSONS_COUNTED = Classification.from_dict(
    {
        "entity_key": "pid",
        "entity_kind": "person",
        "columns": {"pid": "identifier", "county": "public", "age": "measure"},
        "domains": {"county": {"codes": list(DECLARED_COUNTIES)}},
    }
)


def person_id(i: int) -> str:
    return f"P{i:07d}"


def county_of(i: int) -> str | None:
    """Person i's county: the four populated codes in turn, none for every 97th."""
    return None if i % 97 == 0 else COUNTIES[i % 4]


def register_persons(
    platform: Platform, provider: Principal, folder: Path, n: int, name: str = "people"
) -> vault.DatasetVersion:
    """``n`` persons (pid, county on the declared grid, age) under ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    lines = ["pid,county,age"]
    lines += [f"{person_id(i)},{county_of(i) or ''},{20 + i % 60}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vault.register(
        platform, provider, name, f"csv://{path}?text=pid,county", PERSONS_COUNTED
    ).version
