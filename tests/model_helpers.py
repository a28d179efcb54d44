"""Builders for model tests: a synthetic enterprise credit dataset with a default label,
an agreement that covers model training, and requests for a sound and a memorising model.

Everything goes through the real vault, workflow and models functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from policies.classes import Classification
from policies.workflow import Disposal, PassRule
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.data import vault
from sandbox.workflow import agreements, applications, notices, requests, reviews

NOW = datetime.now(UTC)
DATASET = "firm_credit"

CLASSIFICATION = {
    "entity_key": "credit_code",
    "entity_kind": "organisation",
    "membership": "non_sensitive",
    "columns": {
        "credit_code": "identifier",
        "county": "public",
        "capital": "measure",
        "arrears_months": "measure",
        "staff": "measure",
        "bill_mean": "measure",
        "defaulted": "measure",
    },
}

CONSENT = {
    "reference": "LOAN-APP-0001",
    "who": "legal representative",
    "purpose": "credit assessment",
    "given_at": "2026-11-30",
}

FEATURES = (
    "SELECT credit_code, MAX(capital) AS capital, MAX(arrears_months) AS arrears, "
    "MAX(staff) AS staff, MAX(bill_mean) AS bills, MAX(defaulted) AS defaulted "
    f"FROM {DATASET} GROUP BY credit_code"
)

SOUND = {
    "name": "credit_tree",
    "features": FEATURES,
    "label": "defaulted",
    "algorithm": "decision_tree",
    "params": {"max_depth": 4, "min_samples_leaf": 60},
}

BANDS = [
    {"grade": "a", "upto": 0.05},
    {"grade": "b", "upto": 0.15},
    {"grade": "c", "upto": 0.35},
    {"grade": "d", "upto": 1.0},
]


def credit_table(n: int = 2500, seed: int = 5) -> pa.Table:
    """Enterprises with a plausible default label: more likely with arrears, few staff
    and small bills."""
    rng = np.random.default_rng(seed)
    capital = np.round(rng.lognormal(13, 1.2, n), 0)
    arrears = rng.poisson(0.8, n)
    staff = rng.poisson(12, n)
    bills = np.round(rng.lognormal(6, 0.7, n), 2)
    z = -1.6 + 1.1 * arrears - 0.12 * staff - 0.8 * (np.log(bills) - 6)
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return pa.table(
        {
            "credit_code": [f"91370800E{i:08d}" for i in range(n)],
            "county": rng.choice(["任城区", "兖州区", "曲阜市"], n),
            "capital": capital,
            "arrears_months": arrears,
            "staff": staff,
            "bill_mean": bills,
            "defaulted": defaulted,
        }
    )


@dataclass
class World:
    platform: Platform
    table: pa.Table
    provider: Principal
    city: Principal
    operator: Principal
    consumer: Principal
    auditor: Principal
    agreement: int
    tokens: dict[str, str]


def make_world(platform: Platform, make_principal, tmp: Path, n: int = 2500) -> World:
    made, tokens = {}, {}
    for name, role, jur in [
        ("provider", Role.PROVIDER, None),
        ("city", Role.AUTHORITY, "city"),
        ("r1", Role.REVIEWER, None),
        ("r2", Role.REVIEWER, None),
        ("bank", Role.OPERATOR, None),
        ("lender", Role.CONSUMER, None),
        ("auditor", Role.AUDITOR, None),
    ]:
        made[name], tokens[name] = make_principal(name, role, org=f"{name} org", jurisdiction=jur)
    table = credit_table(n)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"{DATASET}.parquet"
    pq.write_table(table, path)
    vault.register(
        platform, made["provider"], DATASET, str(path), Classification.from_dict(CLASSIFICATION)
    )
    agreement = sign_agreement(platform, made)
    return World(
        platform,
        table,
        made["provider"],
        made["city"],
        made["bank"],
        made["lender"],
        made["auditor"],
        agreement,
        tokens,
    )


def sign_agreement(
    platform: Platform, made: dict, days: int = 365, product_kinds: tuple[str, ...] = ("model",)
) -> int:
    nid = notices.publish(
        platform,
        made["city"],
        title="Enterprise credit models",
        domain="finance",
        scenario="credit risk of small enterprises for lending",
        datasets=[DATASET],
        conditions="licensed",
        deadline=NOW + timedelta(days=30),
        jurisdiction=None,
        pass_rule=PassRule(),
    )
    aid = applications.apply(
        platform,
        made["bank"],
        nid,
        scenario="a credit model scored for banks",
        datasets={DATASET: None},
        security_measures="ISO 27001",
        security_officer="Wang Li",
        incident_plan="call the authority",
        job_kinds=["model_train"],
        product_kinds=list(product_kinds),
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
        rights_duties="models stay inside; grades only",
        security_requirements="grades only",
        exit_conditions="term end",
        breach_liability="suspension",
        disposal=Disposal.DELETE,
    )
    rid = requests.request_data(platform, made["bank"], agreement, DATASET, purpose="credit model")
    requests.approve(platform, made["provider"], rid)
    return agreement


def trained_world(folder: Path) -> World:
    """A platform under ``folder`` with the world of :func:`make_world` and the sound model
    trained (training takes seconds: a module trains once, each test copies the home)."""
    from sandbox.core import principals
    from sandbox.core.ledger import now_utc
    from sandbox.models import service

    platform = Platform.init(folder / "home")

    def make(name, role, *, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, folder / "data")
    service.train(platform, world.operator, SOUND)
    platform.close()
    return world


def copied_world(trained: World, folder: Path) -> World:
    """The trained world on a copy of its home under ``folder``, open (the caller closes)."""
    import dataclasses
    import shutil

    shutil.copytree(trained.platform.home, folder / "home")
    return dataclasses.replace(trained, platform=Platform.open(folder / "home"))
