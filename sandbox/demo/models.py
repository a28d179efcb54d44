"""The demo's model part: an enterprise credit model trained inside, judged, published as a
scoring service, and a bank grading a batch of 200 enterprises with their consent.

Called by the demo (``sandbox/demo/flow.py``) after the demo tables are registered::

    from sandbox.demo.models import demo_models
    demo_models(platform, echo, authority=authority, providers=providers,
                reviewers=reviewers, consumer=consumer)

The city's credit information platform registers a loan book with a default label
(:mod:`sandbox.demo.loans`, drawn from the registered demo tables); a credit-rating firm
of its own gets an agreement whose scope is job kind ``model_train``, so the demo's other
agreements (and their suspension and disposal) are untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from policies.classes import Classification
from policies.errors import PolicyRefusal
from policies.workflow import Disposal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, add_principal
from sandbox.data.vault import get_version, register
from sandbox.demo.loans import CLASSIFICATION, loan_book
from sandbox.models import calls, services, training
from sandbox.workflow import agreements, applications, notices, requests, reviews

SOURCES = ("enterprises", "utility_payments", "social_insurance")
TABLES = ("loans", *SOURCES)

FEATURES = """
SELECT l.credit_code,
       MAX(e.registered_capital) AS capital,
       MAX(CASE WHEN e.status = '存续' THEN 0 ELSE 1 END) AS closed,
       COUNT(DISTINCT CASE WHEN u.in_arrears THEN u.month END) AS months_in_arrears,
       AVG(u.amount) AS mean_bill,
       COUNT(DISTINCT s.pid) AS insured_staff,
       MAX(l.defaulted) AS defaulted
FROM loans l
JOIN enterprises e ON e.credit_code = l.credit_code
LEFT JOIN utility_payments u ON u.payer_id = l.credit_code
LEFT JOIN social_insurance s ON s.credit_code = l.credit_code
GROUP BY l.credit_code
"""

MODEL: dict[str, Any] = {
    "name": "sme_credit",
    "features": FEATURES,
    "label": "defaulted",
    "algorithm": "gradient_boosting",
    "params": {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "min_samples_leaf": 40},
    "description": "default risk of small enterprises from public data",
}

SERVICE: dict[str, Any] = {
    "name": "sme_grades",
    "model": "sme_credit",
    "description": "credit grade of a small enterprise, a (lowest risk) to d",
    "bands": [
        {"grade": "a", "upto": 0.1},
        {"grade": "b", "upto": 0.2},
        {"grade": "c", "upto": 0.4},
        {"grade": "d", "upto": 1.0},
    ],
}


def _loans(platform: Platform, provider: Principal, folder: Path) -> int:
    """The loan book drawn from the registered snapshots, registered by its provider."""
    with platform.store.read() as conn:
        tables = {t: pq.read_table(get_version(conn, platform, t).path) for t in SOURCES}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loans.parquet"
    pq.write_table(loan_book(tables), path)
    classification = Classification.from_dict(yaml.safe_load(CLASSIFICATION.read_text("utf-8")))
    result = register(platform, provider, "loans", str(path), classification)
    return int(result.version.rows)


def _agreement(platform, authority, operator, providers, reviewers) -> int:
    now = datetime.now(UTC)
    notice = notices.publish(
        platform, authority, title="Enterprise credit models", domain="finance",
        scenario="credit grades of small enterprises for lending", datasets=list(TABLES),
        conditions="a licensed credit operator", deadline=now + timedelta(days=30),
    )  # fmt: skip
    application = applications.apply(
        platform, operator, notice, scenario="a credit model of small enterprises for banks",
        datasets={t: None for t in TABLES}, security_measures="MLPS level 3; models stay inside",
        security_officer="Sun Hao", incident_plan="stop the service, report within one hour",
        job_kinds=["model_train"], product_kinds=["model"],
    )  # fmt: skip
    reviews.appoint(platform, authority, application, [r.name for r in reviewers])
    for reviewer in reviewers:
        reviews.score(platform, reviewer, application, capability=86, scenario=84, security=85)
    agreement = agreements.sign(
        platform, authority, application, valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=365), rights_duties="credit models; grades only",
        security_requirements="models stay inside; consent for every grade",
        exit_conditions="at term end, on breach", breach_liability="suspension, then termination",
        disposal=Disposal.DELETE,
    )  # fmt: skip
    for table in TABLES:
        rid = requests.request_data(platform, operator, agreement, table, purpose="credit model")
        requests.approve(platform, providers[table], rid)
    return agreement


def demo_models(
    platform: Platform,
    echo: Callable[[str], None],
    *,
    authority: Principal,
    providers: Mapping[str, Principal],
    reviewers: Sequence[Principal],
    consumer: Principal,
    folder: Path,
) -> dict[str, Any]:
    """Train, judge, publish and grade (see the module); returns figures."""
    echo("== Data models and scoring services (数据模型, 数据服务, Art. 4, 15, 19)")
    credit = add_principal(
        platform, "jining_credit_platform", Role.PROVIDER, "Jining credit information platform"
    )[0]
    loans = _loans(platform, credit, folder)
    echo(f"   {credit.name} registers a loan book of {loans:,} enterprises with a default label")
    operator = add_principal(platform, "taishan_rating", Role.OPERATOR, "Taishan Credit Rating")[0]
    agreement = _agreement(platform, authority, operator, {**providers, "loans": credit}, reviewers)
    echo(f"   agreement {agreement} for {operator.name} covers job kind 'model_train'")
    try:
        training.train(
            platform,
            operator,
            {
                **MODEL,
                "name": "memorised",
                "params": {
                    "n_estimators": 60,
                    "max_depth": 5,
                    "learning_rate": 0.1,
                    "min_samples_leaf": 2,
                },
            },
        )
    except PolicyRefusal as refusal:  # fmt: skip
        echo(
            f"   a model with leaves of 2 enterprises -> refused [{refusal.rule}] ({refusal.article})"
        )
    out = training.train(platform, operator, MODEL)
    card = out["card"]
    ev = card["evaluation"]
    echo(
        f"   {operator.name} trains {card['name']} ({card['algorithm']}) in an isolated worker: "
        f"{card['verdict']}; held-out AUC {ev['auc']}, KS {ev['ks']} on {ev['holdout_entities']} "
        "enterprises"
    )
    attacks = card["attacks"]["figures"]
    echo(
        f"   membership-inference attacks: worst case AUC {attacks['worst_case_auc']}, LiRA "
        f"AUC {attacks['lira_auc']} ({attacks['shadow_models']} shadow models); the model "
        "card is signed and its hash is in the ledger"
    )
    sizes = services.define(platform, operator, SERVICE)["band_sizes"]
    built = services.approve(platform, authority, SERVICE["name"])
    echo(
        f"   {authority.name} publishes scoring service {SERVICE['name']}: "
        f"{built['index_rows']:,} enterprises graded a to d ({', '.join(map(str, sizes))})"
    )
    grades = _grade_batch(platform, echo, consumer)
    calls.close(platform)
    return {"auc": ev["auc"], "grades": dict(grades), "verdict": card["verdict"]}


def _grade_batch(platform: Platform, echo: Callable[[str], None], consumer: Principal) -> Counter:
    """The bank grades 200 borrowers, each with its consent record; then one call
    without consent is refused."""
    with platform.store.read() as conn:
        book = pq.read_table(get_version(conn, platform, "loans").path)
    keys = book.column("credit_code").to_pylist()[:200]
    today = datetime.now(UTC).date().isoformat()
    items = [
        {"key": key, "consent": {"reference": f"JRCB-LOAN-{i:05d}", "who": "legal representative",
                                 "purpose": "working-capital loan", "given_at": today}}
        for i, key in enumerate(keys)
    ]  # fmt: skip
    result = calls.call(platform, consumer, SERVICE["name"], items)
    grades = Counter(r.code or f"refused:{r.refused}" for r in result.results)
    echo(
        f"   {consumer.name} grades a batch of {len(items)} enterprises with their consent: "
        + ", ".join(f"{g} {n}" for g, n in sorted(grades.items()))
    )
    try:
        calls.call(platform, consumer, SERVICE["name"], [{"key": keys[0]}])
    except PolicyRefusal as refusal:
        echo(f"   without consent -> refused [{refusal.rule}] ({refusal.article})")
    return grades
