"""``sandbox demo``: the whole flow on a throw-away platform home.

The one place a newcomer sees everything: providers register Jining's
synthetic public data (profiles shown), the authority grants an operator
three datasets, the operator's aggregate query is released with some cells
suppressed, three attempts to extract raw data are refused with the rule and
article, and the product and the ledger are verified.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.quality import format_profile
from policies.workflow import Disposal, Vote
from sandbox.core import ledger
from sandbox.core.keys import load_public
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, add_principal
from sandbox.data.release import verify_product
from sandbox.data.vault import get_version, register
from sandbox.demo.data import DEMO_TABLES, write_demo_data
from sandbox.demo.ending import demo_ending, demo_provider
from sandbox.demo.he import demo_he
from sandbox.demo.models import demo_models
from sandbox.demo.psi import demo_psi
from sandbox.demo.verification import demo_verify
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobOutcome, JobState
from sandbox.workflow import (
    agreements,
    airlock,
    applications,
    countersign,
    deliveries,
    feedback,
    notices,
    requests,
    reviews,
    supervision,
    usage,
)

PROVIDERS = {
    "persons": ("jining_public_security", "Jining Public Security Bureau"),
    "enterprises": ("jining_market_regulation", "Jining Administration for Market Regulation"),
    "utility_payments": ("jining_utilities", "Jining water, power and gas utilities"),
    "social_insurance": ("jining_social_security", "Jining Social Security Bureau"),
    "bus_trips": ("jining_transit", "Jining Public Transport Group"),
}

GRANTED = {
    "persons": ["pid", "county", "sex", "birth_date", "income", "name"],
    "enterprises": ["credit_code", "county", "industry", "registered_capital", "status"],
    "utility_payments": ["payer_id", "payer_kind", "county", "utility", "amount"],
}

RELEASED_QUERY = """\
SELECT county, industry,
       COUNT(*) AS enterprises,
       SUM(registered_capital) AS capital
FROM enterprises
WHERE status = '存续'
GROUP BY county, industry
ORDER BY county, industry"""

UTILITY_QUERY = """\
SELECT county, utility,
       COUNT(DISTINCT payer_id) AS payers,
       ROUND(SUM(amount), 2) AS paid,
       ROUND(AVG(amount), 2) AS mean_bill
FROM utility_payments
WHERE payer_kind = 'household'
GROUP BY county, utility
ORDER BY county, utility"""

HELD_BY = "utility_payments"  # the dataset whose provider suspends its use in step 12

ATTACKS = (
    ("a row-level select of names and incomes", "SELECT name, income FROM persons"),
    (
        "one person singled out by ID number",
        "SELECT COUNT(*) AS n, SUM(income) AS income FROM persons WHERE pid = '370811199001011234'",
    ),
    (
        "the poorest income of each county",
        "SELECT county, MIN(income) AS lowest FROM persons GROUP BY county",
    ),
)


def _add(
    platform: Platform, name: str, role: Role, org: str, jurisdiction: str | None = None
) -> tuple[Principal, str]:
    return add_principal(platform, name, role, org, jurisdiction)


@dataclass
class _Cast:
    """The demo's principals."""

    providers: dict[str, Principal]
    authority: Principal
    operator: Principal
    operator_token: str
    auditor: Principal
    reviewers: list[Principal]
    consumer: Principal


def run_demo(
    persons: int = 100_000, echo: Callable[[str], None] = print, home: Path | None = None
) -> Path:
    """Run the demo; return the home folder it used."""
    home = Path(home or tempfile.mkdtemp(prefix="sandbox-demo-")) / "home"
    started = time.perf_counter()
    echo(f"== 1. A throw-away platform at {home}")
    platform = Platform.init(home)
    cast = _principals(platform, echo)
    summary = _register(platform, echo, cast, home.parent / "data", persons)
    agreement_id = _workflow(
        platform, echo, cast.authority, cast.operator, cast.providers, cast.reviewers
    )
    names = [r.name for r in cast.reviewers]
    airlock.appoint_checkers(platform, cast.authority, names, agreement_id=agreement_id)
    echo(
        f"   {cast.authority.name} appoints {' and '.join(names)} as the output checkers of "
        f"agreement {agreement_id}: exact tables about persons wait for both (Art. 15)"
    )
    service = JobService(platform, spare=True)
    try:
        product_ids = _queries(service, echo, cast.operator, cast.reviewers)
        demo_he(platform, echo, cast.operator)
        demo_psi(platform, echo, cast.operator, cast.authority, agreement_id)
        demo_verify(
            platform,
            echo,
            authority=cast.authority,
            providers=cast.providers,
            reviewers=cast.reviewers,
            consumer=cast.consumer,
            auditor=cast.auditor,
        )
        demo_models(
            platform,
            echo,
            authority=cast.authority,
            providers=cast.providers,
            reviewers=cast.reviewers,
            consumer=cast.consumer,
            folder=home.parent / "loans",
        )
        _supervision(
            platform,
            echo,
            service,
            cast.authority,
            cast.operator,
            cast.consumer,
            agreement_id,
            product_ids,
            cast.reviewers,
        )
    finally:
        service.close()
    product_ids.extend(_through_the_api(home, echo, cast.operator_token))
    _verify_all(platform, echo, home, product_ids)
    demo_provider(platform, echo, cast.providers[HELD_BY], cast.operator, HELD_BY, agreement_id)
    demo_ending(platform, echo, cast.operator, agreement_id, home.parent / "backup")
    echo("== Summary of registered datasets")
    echo(f"   {'dataset':<17} {'version':>7} {'rows':>12}  {'provider':<26} sha256")
    for table, version, rows, sha, provider in summary:
        echo(f"   {table:<17} {version:>7} {rows:>12,}  {provider:<26} {sha[:16]}")
    echo(f"demo finished in {time.perf_counter() - started:.1f} s")
    platform.close()
    return home.parent


def _principals(platform: Platform, echo) -> _Cast:
    echo(
        "== 2. Principals (Art. 5): five providers, the city authority, two reviewers, "
        "an operator, a consumer, an auditor"
    )
    providers = {
        table: _add(platform, name, Role.PROVIDER, org)[0]
        for table, (name, org) in PROVIDERS.items()
    }
    authority, _ = _add(platform, "jining_bda", Role.AUTHORITY, "Jining Big Data Bureau", "city")
    operator, operator_token = _add(
        platform, "lucheng_credit", Role.OPERATOR, "Lucheng Credit Services Ltd"
    )
    auditor, _ = _add(platform, "city_audit", Role.AUDITOR, "Jining Cyberspace Administration")
    reviewers = [
        _add(platform, "reviewer_sdu", Role.REVIEWER, "Shandong University")[0],
        _add(platform, "reviewer_qfnu", Role.REVIEWER, "Qufu Normal University")[0],
    ]
    consumer, _ = _add(platform, "jining_bank", Role.CONSUMER, "Jining Rural Commercial Bank")
    return _Cast(providers, authority, operator, operator_token, auditor, reviewers, consumer)


def _register(platform: Platform, echo, cast: _Cast, data_dir: Path, persons: int) -> list:
    """Steps 3 and 4: write the synthetic data, register it, show two quality profiles.
    Returns (table, version, rows, sha256, provider) per dataset."""
    t = time.perf_counter()
    paths = write_demo_data(data_dir, persons=persons)
    echo(
        f"== 3. Synthetic public data of Jining: {persons:,} persons "
        f"({time.perf_counter() - t:.1f} s)"
    )
    echo("== 4. Providers register their data (Art. 14): streamed into versioned snapshots")
    providers = cast.providers
    summary = []
    for table, path in paths.items():
        t = time.perf_counter()
        result = register(
            platform, providers[table], table, str(path), DEMO_TABLES[table].classification()
        )
        v = result.version
        summary.append((table, v.version, v.rows, v.sha256, providers[table].name))
        echo(
            f"   {table:<17} v{v.version}  {v.rows:>10,} rows  sha256 {v.sha256[:12]}  "
            f"({time.perf_counter() - t:.1f} s)"
        )
    again = register(
        platform,
        providers["persons"],
        "persons",
        str(paths["persons"]),
        DEMO_TABLES["persons"].classification(),
    )
    echo(
        f"   re-registering unchanged persons keeps version {again.version.version} "
        f"(changed: {again.changed})"
    )
    with platform.store.read() as conn:
        for table in ("persons", "enterprises"):
            echo(f"   quality profile of {table} (stays inside the platform):")
            for line in format_profile(get_version(conn, platform, table).profile).splitlines():
                echo("     " + line)
    return summary


def _checked(
    service: JobService, echo, operator: Principal, reviewers: list[Principal], outcome: JobOutcome
) -> JobOutcome:
    """A person job in table mode is withheld until the two output checkers approve it."""
    if outcome.state is not JobState.WITHHELD:
        return outcome
    echo(f"   -> job {outcome.job_id}: withheld for review (a person job in table mode)")
    for reviewer in reviewers:
        airlock.vote(
            service.platform,
            reviewer,
            outcome.job_id,
            Vote.APPROVE,
            "every cell checked against the rules and the audit; no cell singles anyone out",
        )
    echo(f"   {' and '.join(r.name for r in reviewers)} review the cells and approve")
    return service.outcome(operator, outcome.job_id)


def _queries(
    service: JobService, echo, operator: Principal, reviewers: list[Principal]
) -> list[str]:
    """Steps 6 and 7: two released queries, then extraction attempts refused."""
    echo(
        "== 6. The operator's aggregate queries run in an isolated worker; "
        "every cell is checked (Art. 15)"
    )
    product_ids = []
    for sql in (RELEASED_QUERY, UTILITY_QUERY):
        echo("   " + "\n   ".join(sql.splitlines()))
        outcome = _checked(
            service, echo, operator, reviewers, service.submit(operator, {"sql": sql})
        )
        echo(f"   -> job {outcome.job_id}: {outcome.state.value}, product {outcome.product_id}")
        for line in (outcome.report or {}).get("summary", "").splitlines():
            echo("      " + line)
        if outcome.product_id:
            product_ids.append(outcome.product_id)
    echo("== 7. Attempts to extract raw data are refused before anything runs")
    for label, sql in ATTACKS:
        outcome = service.submit(operator, {"sql": sql})
        reason = outcome.reason or {}
        echo(
            f"   {label}:\n     {sql}\n   -> {outcome.state.value} "
            f"[{reason.get('rule')}]: {reason.get('message')}"
        )
    echo(
        "== 7b. Homomorphic encryption: a bank's loan balances summed by county and "
        "industry it never sees (Art. 7)"
    )
    return product_ids


def _verify_all(platform: Platform, echo, home: Path, product_ids: list[str]) -> None:
    """Step 11: every product's signature and hashes, and the ledger."""
    echo("== 11. Verification (Art. 7)")
    public = load_public(platform.public_key_path)
    for product_id in product_ids:
        folder = home / "products" / product_id
        manifest = verify_product(folder, public)
        echo(
            f"   product {product_id}: signature and {len(manifest['files'])} file hashes verified "
            f"({folder})"
        )
        preview = (folder / "output.csv").read_text(encoding="utf-8").splitlines()[:6]
        for line in preview:
            echo("     " + line)
    with platform.store.read() as conn:
        report = ledger.verify(conn, public)
    echo(f"   ledger: {report.entries} entries, hash chain and signed head verified")


def _workflow(platform, echo, authority, operator, providers, reviewers) -> int:
    """Art. 9 to 14: notice, application, review, agreement, data requests and approvals."""
    now = datetime.now(UTC)
    echo("== 5. The operation flow (Art. 9-14)")
    notice_id = notices.publish(
        platform,
        authority,
        title="Regional economy indicators for credit risk",
        domain="finance",
        scenario="county and industry aggregates for small-business lending",
        datasets=list(GRANTED),
        conditions="a licensed credit-information firm",
        deadline=now + timedelta(days=30),
    )
    echo(f"   notice {notice_id} published by {authority.name} (Art. 10)")
    application_id = applications.apply(
        platform,
        operator,
        notice_id,
        scenario="county x industry capital and household bills",
        datasets=GRANTED,
        security_measures="isolated analysts, MLPS level 3, staff training",
        security_officer="Zhang Wei",
        incident_plan="stop all jobs, report to the authority within one hour",
        job_kinds=["sql_aggregate", "he_aggregate", "psi_match"],
        product_kinds=["report"],
    )
    echo(
        f"   application {application_id} by {operator.name}, with its data-security officer "
        "(Art. 20) and incident-response plan (Art. 21) (Art. 11)"
    )
    reviews.appoint(platform, authority, application_id, [r.name for r in reviewers])
    for reviewer, scores in zip(reviewers, ((82, 76, 88), (78, 81, 85)), strict=True):
        state = reviews.score(
            platform,
            reviewer,
            application_id,
            capability=scores[0],
            scenario=scores[1],
            security=scores[2],
        )
        echo(
            f"   {reviewer.name} scores capability {scores[0]}, scenario {scores[1]}, "
            f"security {scores[2]} -> application {state.value} (Art. 12)"
        )
    agreement_id = agreements.sign(
        platform,
        authority,
        application_id,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=365),
        rights_duties="aggregate reports on the granted datasets only",
        security_requirements="no raw data leaves the sandbox; products pass the output check",
        exit_conditions="at term end, on breach, or on a failed evaluation not rectified",
        breach_liability="suspension, then termination",
        disposal=Disposal.DELETE,
    )
    echo(
        f"   agreement {agreement_id} signed for one year; at expiry derived products are "
        "deleted (Art. 13)"
    )
    first = next(iter(GRANTED))
    signed = countersign.countersign(platform, providers[first], agreement_id, first,
                                     "county-level indicators only; no linkage with other sources")  # fmt: skip
    echo(
        f"   {providers[first].name} signs the agreement for its {first} on its own terms "
        f'(Art. 4, 13): "{signed["terms"]}"'
    )
    for table in GRANTED:
        request_id = requests.request_data(
            platform, operator, agreement_id, table, purpose="county-level indicators"
        )
        grant_id = requests.approve(platform, providers[table], request_id)
        echo(
            f"   data request {request_id} for {table} approved by {providers[table].name} "
            f"-> grant {grant_id} (Art. 14)"
            + ("" if table == first else "; the approval is its provider's signature (Art. 13)")
        )
    return agreement_id


def _supervision(
    platform, echo, service, authority, operator, consumer, agreement_id, product_ids, reviewers
) -> None:
    """Art. 16, 23, 24: feedback, a failed evaluation that suspends, rectification."""
    echo("== 8. Feedback and supervision (Art. 16, 23, 24)")
    if product_ids:
        deliveries.deliver(platform, operator, product_ids[0], consumer.name, "credit limits")
        echo(f"   {operator.name} delivers {product_ids[0]} to {consumer.name} (Art. 15)")
        feedback.give(platform, consumer, product_ids[0], quality=4, use=5, effect=4,
                      comment="useful for county credit limits")  # fmt: skip
        echo(f"   {consumer.name} rates its quality 4, use 5, effect 4 of 5 (Art. 16)")
    supervision.evaluate(
        platform,
        authority,
        agreement_id,
        passed=False,
        notes="usage reports filed late",
        deadline=datetime.now(UTC) + timedelta(days=30),
    )
    echo(f"   evaluation failed: agreement {agreement_id} suspended, rectification due in 30 days")
    outcome = service.submit(operator, {"sql": UTILITY_QUERY})
    reason = outcome.reason or {}
    echo(
        f"   the operator's next job -> {outcome.state.value} [{reason.get('rule')}]: "
        f"{reason.get('message')} ({reason.get('article')})"
    )
    supervision.rectify(platform, authority, agreement_id, "reports filed; process fixed")
    outcome = service.submit(operator, {"sql": UTILITY_QUERY})
    outcome = _checked(service, echo, operator, reviewers, outcome)
    echo(
        f"   rectified and restored; the same job -> {outcome.state.value}, "
        f"product {outcome.product_id}"
    )
    echo("== 9. Usage report of the operator from the ledger (Art. 16)")
    period = f"{datetime.now(UTC).year}-Q{(datetime.now(UTC).month - 1) // 3 + 1}"
    report = usage.usage_report(platform, authority, operator.name, period)
    totals = report.get("totals", report)
    shown = {k: v for k, v in totals.items() if isinstance(v, int | float)}
    echo(f"   {period}: " + ", ".join(f"{k} {v}" for k, v in sorted(shown.items())))


def _through_the_api(home: Path, echo: Callable[[str], None], token: str) -> list[str]:
    """The operator's job again, through `sandbox serve` on loopback and the Python client."""
    import socket
    import subprocess
    import sys

    from sandbox.client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    echo(f"== 10. The same service over HTTP (Art. 6): sandbox serve on {url}")
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--home", str(home), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with Client(url, token) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ready()
                    break
                except Exception:
                    if time.monotonic() > deadline or server.poll() is not None:
                        echo("   the server did not start; skipping this step")
                        return []
                    time.sleep(0.2)
            job = client.submit_job(UTILITY_QUERY)
            echo(f"   POST /v1/jobs -> 202, job {job.job} {job.state}")
            done = client.wait_job(job.job)
            echo(f"   GET /v1/jobs/{job.job}?wait=... -> {done.state}, product {done.product}")
            if done.state == "withheld":
                echo("   (a person job: it waits for the two output checkers, as in step 6)")
            refused = client.submit_job(ATTACKS[0][1])
            echo(
                f"   a row-level select over HTTP -> {refused.state} "
                f"[{(refused.reason or {}).get('rule')}]"
            )
            return [done.product] if done.product else []
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
