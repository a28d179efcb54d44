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
from pathlib import Path

from connectors.quality import format_profile

from . import ledger
from .demo_data import DEMO_TABLES, write_demo_data
from .execution import JobService
from .grants import add_grant
from .keys import load_public
from .ledger import now_utc
from .platform import Platform
from .principals import Principal, Role, insert
from .release import verify_product
from .vault import register

PROVIDERS = {
    "persons": ("jining_public_security", "Jining Public Security Bureau"),
    "enterprises": ("jining_market_regulation", "Jining Administration for Market Regulation"),
    "utility_payments": ("jining_utilities", "Jining water, power and gas utilities"),
    "social_insurance": ("jining_social_security", "Jining Social Security Bureau"),
    "bus_trips": ("jining_transit", "Jining Public Transport Group"),
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

ATTACKS = (
    ("a row-level select of names and incomes", "SELECT name, income FROM persons"),
    ("one person singled out by ID number",
     "SELECT COUNT(*) AS n, SUM(income) AS income FROM persons "
     "WHERE pid = '370811199001011234'"),
    ("the poorest income of each county", "SELECT county, MIN(income) AS lowest FROM persons "
     "GROUP BY county"),
)


def _add(platform: Platform, name: str, role: Role, org: str,
         jurisdiction: str | None = None) -> tuple[Principal, str]:
    with platform.store.transaction() as conn:
        principal, token = insert(conn, name, role, org, jurisdiction, now_utc())
        platform.record(conn, ledger.SYSTEM, "principal.add", f"principal:{name}",
                        {"role": role.value, "org": org, "jurisdiction": jurisdiction}, "Art. 5")
    return principal, token


def run_demo(persons: int = 100_000, echo: Callable[[str], None] = print,
             home: Path | None = None) -> Path:
    """Run the demo; return the home folder it used."""
    home = Path(home or tempfile.mkdtemp(prefix="sandbox-demo-")) / "home"
    started = time.perf_counter()
    echo(f"== 1. A throw-away platform at {home}")
    platform = Platform.init(home)

    echo("== 2. Principals (Art. 5): five providers, the city authority, an operator, an auditor")
    providers = {table: _add(platform, name, Role.PROVIDER, org)[0]
                 for table, (name, org) in PROVIDERS.items()}
    authority, _ = _add(platform, "jining_bda", Role.AUTHORITY, "Jining Big Data Bureau", "city")
    operator, _ = _add(platform, "lucheng_credit", Role.OPERATOR, "Lucheng Credit Services Ltd")
    _add(platform, "city_audit", Role.AUDITOR, "Jining Cyberspace Administration")

    data_dir = home.parent / "data"
    t = time.perf_counter()
    paths = write_demo_data(data_dir, persons=persons)
    echo(f"== 3. Synthetic public data of Jining: {persons:,} persons "
         f"({time.perf_counter() - t:.1f} s)")

    echo("== 4. Providers register their data (Art. 14): streamed into versioned snapshots")
    summary = []
    for table, path in paths.items():
        t = time.perf_counter()
        result = register(platform, providers[table], table, str(path),
                          DEMO_TABLES[table].classification())
        v = result.version
        summary.append((table, v.version, v.rows, v.sha256, providers[table].name))
        echo(f"   {table:<17} v{v.version}  {v.rows:>10,} rows  sha256 {v.sha256[:12]}  "
             f"({time.perf_counter() - t:.1f} s)")
    again = register(platform, providers["persons"], "persons", str(paths["persons"]),
                     DEMO_TABLES["persons"].classification())
    echo(f"   re-registering unchanged persons keeps version {again.version.version} "
         f"(changed: {again.changed})")
    with platform.store.read() as conn:
        from .vault import get_version

        for table in ("persons", "enterprises"):
            echo(f"   quality profile of {table} (stays inside the platform):")
            for line in format_profile(get_version(conn, platform, table).profile).splitlines():
                echo("     " + line)

    echo("== 5. The authority grants the operator three datasets until the end of 2027")
    for table in ("persons", "enterprises", "utility_payments"):
        add_grant(platform, authority, operator.name, table, until="2027-12-31")

    service = JobService(platform, spare=True)
    try:
        echo("== 6. The operator's aggregate queries run in an isolated worker; "
             "every cell is checked (Art. 15)")
        product_ids = []
        for sql in (RELEASED_QUERY, UTILITY_QUERY):
            echo("   " + "\n   ".join(sql.splitlines()))
            outcome = service.submit(operator, {"sql": sql})
            echo(f"   -> job {outcome.job_id}: {outcome.state.value}, product {outcome.product_id}")
            for line in (outcome.report or {}).get("summary", "").splitlines():
                echo("      " + line)
            if outcome.product_id:
                product_ids.append(outcome.product_id)

        echo("== 7. Attempts to extract raw data are refused before anything runs")
        for label, sql in ATTACKS:
            outcome = service.submit(operator, {"sql": sql})
            reason = outcome.reason or {}
            echo(f"   {label}:\n     {sql}\n   -> {outcome.state.value} "
                 f"[{reason.get('rule')}]: {reason.get('message')}")
    finally:
        service.close()

    echo("== 8. Verification (Art. 7)")
    public = load_public(platform.public_key_path)
    for product_id in product_ids:
        folder = home / "products" / product_id
        manifest = verify_product(folder, public)
        echo(f"   product {product_id}: signature and {len(manifest['files'])} file hashes verified "
             f"({folder})")
        preview = (folder / "output.csv").read_text(encoding="utf-8").splitlines()[:6]
        for line in preview:
            echo("     " + line)
    with platform.store.read() as conn:
        report = ledger.verify(conn, public)
    echo(f"   ledger: {report.entries} entries, hash chain and signed head verified")

    echo("== Summary of registered datasets")
    echo(f"   {'dataset':<17} {'version':>7} {'rows':>12}  {'provider':<26} sha256")
    for table, version, rows, sha, provider in summary:
        echo(f"   {table:<17} {version:>7} {rows:>12,}  {provider:<26} {sha[:16]}")
    echo(f"demo finished in {time.perf_counter() - started:.1f} s")
    platform.close()
    return home.parent
