"""Golden cases of whole jobs, run through the real JobService and real worker processes.

Each block of ``tests/golden/jobs.sql`` becomes one test. The platform is built
once per module in its own home (output capped at 100 rows by its
``sandbox.toml``), with ``pums`` and ``charities`` registered and granted to
one operator; a block that asks for other grant terms (``-- grant:``,
``-- disclosure:``) runs as an operator holding exactly those terms. Released
products are then checked from the outside: the folder verifies against the
platform's public key, no evidence column leaves, suppressed cells are empty,
and no released count is below the platform's minimum.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.admission import GRANTABLE_FAMILIES, QueryScope, TableScope, admit
from policies.classes import Classification
from policies.outputs import EVIDENCE_PREFIX, OutputRole
from sandbox.core import principals
from sandbox.core.keys import load_public
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.data.release import verify_product
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.run.views import withheld_report
from tests.conftest import DATA, PUMS_CLASSIFICATION

GOLDEN = Path(__file__).resolve().parent / "golden" / "jobs.sql"
MAX_OUTPUT_ROWS = 100
MIN_ENTITIES = 10
PLAIN_COUNTS = frozenset({"count", "count_star"})
OUTCOMES = ("released", "suppressed", "review", "withheld", "refused", "failed")


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    sql: str
    outcome: str
    rules: tuple[str, ...] = ()
    grant: tuple[str, ...] = ()
    disclosure: tuple[tuple[str, str], ...] = ()


def _parse_expected(text: str, line: int) -> tuple[str, tuple[str, ...]]:
    words = text.split(None, 1)
    if not words or words[0] not in OUTCOMES:
        raise ValueError(f"jobs.sql line {line}: unknown outcome {text!r}")
    rules = tuple(r.strip() for r in words[1].split(",")) if len(words) > 1 else ()
    if words[0] in ("suppressed", "review", "refused", "failed") and not rules:
        raise ValueError(f"jobs.sql line {line}: '{words[0]}' needs a rule or code")
    return words[0], rules


def load_cases(path: Path = GOLDEN) -> list[Case]:
    """Turn each ``-- case:`` block into a :class:`Case`."""
    cases: list[Case] = []
    current: dict | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.startswith("-- case:"):
            current = {"name": line[len("-- case:") :].strip(), "line": number, "sql": []}
            current.update(grant=(), disclosure=())
            continue
        if current is None or not line:
            continue
        if line.startswith("-- grant:"):
            current["grant"] = tuple(sorted(g.strip() for g in line[9:].split(",") if g.strip()))
            continue
        if line.startswith("-- disclosure:"):
            pairs = [p.split("=", 1) for p in line[14:].split(",") if p.strip()]
            current["disclosure"] = tuple(sorted((k.strip(), v.strip()) for k, v in pairs))
            continue
        if line.startswith("--"):
            continue
        if ";;" in line:
            sql_part, expected = line.rsplit(";;", 1)
            current["sql"].append(sql_part)
            outcome, rules = _parse_expected(expected.strip(), number)
            sql = "\n".join(current.pop("sql")).strip()
            cases.append(Case(sql=sql, outcome=outcome, rules=rules, **current))
            current = None
        else:
            current["sql"].append(raw)
    if current is not None:
        raise ValueError(f"jobs.sql line {current['line']}: case without ';;' and an outcome")
    return cases


CASES = load_cases()


def charities_classification(path: Path) -> Classification:
    names = [row[0] for row in duckdb.sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
    special = {
        "charity": "identifier",
        "row_id": "identifier",
        "year": "dimension",
        "grant_type": "dimension",
        "status": "dimension",
        "survivor": "dimension",
        "index": "public",
        "wgt": "public",
    }
    return Classification.from_dict(
        {"entity_key": "charity", "columns": {n: special.get(n, "measure") for n in names}}
    )


class GoldenPlatform:
    """One platform for the module, and one operator per distinct grant terms."""

    def __init__(self, home: Path, settings_toml: str = ""):
        """``settings_toml``: more settings (top-level keys and tables), written first."""
        home.mkdir(parents=True)
        # Each case is judged on its own: the differencing defence, which compares
        # every release with all earlier ones, has its own tests (test_differencing).
        (home / "sandbox.toml").write_text(
            f"{settings_toml}\n[job]\nmax_output_rows = {MAX_OUTPUT_ROWS}\n\n"
            "[differencing]\nenabled = false\n"
        )
        self.platform = Platform.init(home)
        self.provider = self._principal("bureau", Role.PROVIDER)
        self.authority = self._principal("city", Role.AUTHORITY, "city")
        pums_cls = Classification.from_dict(PUMS_CLASSIFICATION)
        charities_path = DATA / "charities.parquet"
        self.classifications = {
            "pums": pums_cls,
            "charities": charities_classification(charities_path),
        }
        pums_csv = str(DATA / "pums_1000_pid.csv")
        vault.register(self.platform, self.provider, "pums", pums_csv, pums_cls)
        vault.register(
            self.platform,
            self.provider,
            "charities",
            str(charities_path),
            self.classifications["charities"],
        )
        vault.register(self.platform, self.provider, "private", pums_csv, pums_cls)
        self.operators: dict[tuple, Principal] = {}
        self.service = JobService(self.platform, spare=True)

    def _principal(self, name: str, role: Role, jurisdiction: str | None = None) -> Principal:
        with self.platform.store.transaction() as conn:
            principal, _token = principals.insert(conn, name, role, name, jurisdiction, now_utc())
        return principal

    def operator(self, case: Case) -> Principal:
        key = (case.grant, case.disclosure)
        if key not in self.operators:
            name = f"operator{len(self.operators)}"
            principal = self._principal(name, Role.OPERATOR)
            extras = [g for g in case.grant if g != "expressions"]
            disclosure = {k: _value(v) for k, v in case.disclosure}
            for dataset in ("pums", "charities"):
                add_grant(
                    self.platform,
                    self.authority,
                    name,
                    dataset,
                    until="2099-01-01",
                    extra_aggregates=extras,
                    aggregate_expressions="expressions" in case.grant,
                    disclosure=disclosure,
                )
            self.operators[key] = principal
        return self.operators[key]

    def close(self) -> None:
        self.service.close()
        self.platform.close()


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> GoldenPlatform:
    built = GoldenPlatform(tmp_path_factory.mktemp("golden-jobs") / "home")
    yield built
    built.close()


def test_golden_file_is_rich_enough():
    """The fixture file holds the cases the design asks for."""
    assert len(CASES) >= 30
    seen = {(c.outcome, r) for c in CASES for r in c.rules} | {(c.outcome, None) for c in CASES}
    for needed in [
        ("suppressed", "threshold"),
        ("suppressed", "dominance"),
        ("suppressed", "p_ratio"),
        ("suppressed", "complementary"),
        ("review", "negative"),
        ("withheld", None),
        ("failed", "output_rows"),
        ("refused", "row_level"),
        ("refused", "identifier_literal"),
        ("refused", "table_mode_aggregate"),
        ("refused", "table_mode_expression"),
        ("refused", "statement"),
        ("refused", "table_function"),
        ("refused", "single_select"),
        ("refused", "not_granted"),
    ]:
        assert needed in seen, needed
    assert any(("mitigation", "round_10_5") in c.disclosure for c in CASES)
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


def _count_columns(golden: GoldenPlatform, sql: str) -> list[str]:
    """The output names of the plain COUNT columns of an admitted query."""
    scope = QueryScope(
        tables={n: TableScope(n, c) for n, c in golden.classifications.items()},
        extra_aggregates=GRANTABLE_FAMILIES,
        aggregate_expressions=True,
    )
    spec = admit(sql, scope).spec
    return [
        c.name
        for c in spec.columns
        if c.role is OutputRole.AGGREGATE and c.function in PLAIN_COUNTS
    ]


def _check_product(golden: GoldenPlatform, case: Case, outcome) -> None:
    platform = golden.platform
    folder = platform.home / "products" / outcome.product_id
    manifest = verify_product(folder, load_public(platform.public_key_path))
    assert manifest["job"]["id"] == outcome.job_id
    table = pq.read_table(folder / "output.parquet")
    assert not [n for n in table.column_names if n.startswith(EVIDENCE_PREFIX)]
    csv_names = pacsv.read_csv(folder / "output.csv").column_names
    assert not [n for n in csv_names if n.startswith(EVIDENCE_PREFIX)]
    values = table.to_pydict()
    for cell in outcome.report["cells"]:
        if cell["verdict"] == "suppress":
            assert values[cell["column"]][cell["row"]] is None, cell
    rounding = dict(case.disclosure).get("mitigation") == "round_10_5"
    counts = _count_columns(golden, case.sql)
    for name in counts:
        for value in values[name]:
            if value is not None:
                assert value >= MIN_ENTITIES, (name, "released count below the minimum")
                if rounding:
                    assert value % 5 == 0, (name, "count not rounded to base 5")
    if rounding and counts:
        assert outcome.report["counts"]["rounded"] > 0


def _check_operator_view(golden: GoldenPlatform, seen, report: dict) -> None:
    """What the operator read of the job names no rule and, if withheld, nothing at all."""
    if seen.state is JobState.WITHHELD:
        assert seen.report == withheld_report() and seen.reason is None
        return
    folder = golden.platform.home / "products" / seen.product_id
    product_report = json.loads((folder / "report.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    for shown in (seen.report, product_report, {"check": manifest["check"]}):
        text = json.dumps({k: v for k, v in shown.items() if k != "params"})  # params: settings
        for rule in ("threshold", "dominance", "p_ratio", "complementary", "differencing", "zero"):
            assert rule not in text, (rule, text)
    assert {k: product_report.get(k) for k in seen.report} == seen.report
    suppressed = {(c["row"], c["column"]) for c in report["cells"] if c["verdict"] == "suppress"}
    assert {(c["row"], c["column"]) for c in seen.report["suppressed_cells"]} == suppressed


@pytest.mark.parametrize("case", CASES, ids=[f"L{c.line}-{c.name}" for c in CASES])
def test_job_golden(golden: GoldenPlatform, case: Case):
    operator = golden.operator(case)
    outcome = golden.service.submit(operator, {"sql": case.sql})
    products = golden.platform.home / "products"
    if case.outcome == "refused":
        assert outcome.state is JobState.REFUSED, outcome
        assert outcome.reason["rule"] == case.rules[0], outcome.reason
        assert outcome.reason["article"], outcome.reason
        assert outcome.product_id is None
        for literal in re.findall(r"'([^']{3,})'", case.sql):
            assert literal not in outcome.reason["message"], "a refusal echoes a constant"
        return
    if case.outcome == "failed":
        assert outcome.state is JobState.FAILED, outcome
        assert outcome.reason["code"] == case.rules[0], outcome.reason
        assert outcome.product_id is None
        return
    seen = outcome  # the operator's view: no rule names, no cell counts (issue 17)
    outcome = golden.service.outcome(golden.authority, outcome.job_id)  # the whole report
    report = outcome.report
    assert report is not None, outcome
    _check_operator_view(golden, seen, report)
    fired = {rule for rule, count in report["counts"].items() if count}
    assert set(case.rules) <= fired, (case.rules, report["counts"])
    if case.outcome in ("review", "withheld"):
        assert outcome.state is JobState.WITHHELD, outcome
        expected = "held_for_review" if case.outcome == "review" else "refused"
        assert report["verdict"] == expected, report["summary"]
        assert outcome.product_id is None
        assert not (products / f"prod-{outcome.job_id:06d}").exists()
        return
    assert outcome.state is JobState.RELEASED, outcome
    expected = "released" if case.outcome == "released" else "released_with_suppressions"
    assert report["verdict"] == expected, report["summary"]
    if case.outcome == "suppressed":
        suppressed_rules = {
            r for c in report["cells"] if c["verdict"] == "suppress" for r in c["rules"]
        }
        assert set(case.rules) <= suppressed_rules, (case.rules, suppressed_rules)
    _check_product(golden, case, outcome)
