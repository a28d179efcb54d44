"""Builders for verification tests: demo data, an agreement that covers verification,
and the two products of the issue (identity ID + name; enterprise social insurance).

Everything goes through the real vault, workflow and verification functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from policies.workflow import Disposal, PassRule
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.data import vault
from sandbox.demo.data import DEMO_TABLES, demo_tables
from sandbox.demo.verification import IDENTITY, SOCIAL_INSURANCE  # noqa: F401  (re-exported)
from sandbox.workflow import agreements, applications, notices, requests, reviews

NOW = datetime.now(UTC)
TABLES = ("persons", "enterprises", "social_insurance")

# The demo's two products are the ones under test: one definition, not two.

CONSENT = {
    "reference": "CONSENT-0001",
    "who": "subject",
    "purpose": "account opening",
    "given_at": "2025-12-01",
}


@dataclass
class World:
    platform: Platform
    tables: dict[str, pa.Table]
    provider: Principal
    city: Principal
    operator: Principal
    consumer: Principal
    consumer2: Principal
    auditor: Principal
    agreement: int
    tokens: dict[str, str]


def make_world(platform: Platform, make_principal, tmp: Path, persons: int = 400) -> World:
    made, tokens = {}, {}
    for name, role, jur in [
        ("provider", Role.PROVIDER, None),
        ("city", Role.AUTHORITY, "city"),
        ("r1", Role.REVIEWER, None),
        ("r2", Role.REVIEWER, None),
        ("operator", Role.OPERATOR, None),
        ("consumer", Role.CONSUMER, None),
        ("consumer2", Role.CONSUMER, None),
        ("auditor", Role.AUDITOR, None),
    ]:
        made[name], tokens[name] = make_principal(name, role, org=f"{name} org", jurisdiction=jur)
    tables = demo_tables(persons=persons, seed=11)
    tmp.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        path = tmp / f"{name}.parquet"
        pq.write_table(tables[name], path)
        vault.register(
            platform, made["provider"], name, str(path), DEMO_TABLES[name].classification()
        )
    agreement = sign_agreement(platform, made)
    return World(
        platform,
        tables,
        made["provider"],
        made["city"],
        made["operator"],
        made["consumer"],
        made["consumer2"],
        made["auditor"],
        agreement,
        tokens,
    )


def sign_agreement(platform: Platform, made: dict, days: int = 365) -> int:
    nid = notices.publish(
        platform,
        made["city"],
        title="Verification services",
        domain="finance",
        scenario="identity and social insurance checks for lending",
        datasets=list(TABLES),
        conditions="licensed",
        deadline=NOW + timedelta(days=30),
        jurisdiction=None,
        pass_rule=PassRule(),
    )
    aid = applications.apply(
        platform,
        made["operator"],
        nid,
        scenario="verification for banks",
        datasets={t: None for t in TABLES},
        security_measures="ISO 27001",
        security_officer="Wang Li",
        incident_plan="call the authority",
        job_kinds=["verification"],
        product_kinds=["verification"],
    )
    reviews.appoint(platform, made["city"], aid, ["r1", "r2"])
    for r in ("r1", "r2"):
        reviews.score(platform, made[r], aid, capability=80, scenario=80, security=80)
    agreement = agreements.sign(
        platform,
        made["city"],
        aid,
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=days),
        rights_duties="verification only",
        security_requirements="codes only",
        exit_conditions="term end",
        breach_liability="suspension",
        disposal=Disposal.DELETE,
    )
    for t in TABLES:
        rid = requests.request_data(platform, made["operator"], agreement, t, purpose="verify")
        requests.approve(platform, made["provider"], rid)
    return agreement


_NAMES: dict[int, dict[str, set[str]]] = {}


def direct_identity(tables: dict[str, pa.Table], pid: str, name: str) -> str:
    """The identity rule computed directly over the snapshot's rows, in Python."""
    persons = tables["persons"]
    names = _NAMES.get(id(persons))
    if names is None:
        names = _NAMES[id(persons)] = {}
        data = persons.to_pydict()
        for p, n in zip(data["pid"], data["name"], strict=True):
            names.setdefault(p, set()).add(n)
    if pid not in names:
        return "not_found"
    return "match" if name in names[pid] else "mismatch"


def direct_social_insurance(tables: dict[str, pa.Table], code: str) -> str:
    firms = set(tables["enterprises"].column("credit_code").to_pylist())
    if code not in firms:
        return "not_found"
    si = tables["social_insurance"].to_pydict()
    months = {m for c, m in zip(si["credit_code"], si["month"], strict=True) if c == code}
    return "yes" if len(months) >= 6 else "no"
