"""Golden cases of SQL admission, run through the real checker and the real DuckDB.

Each block of ``tests/golden/admission.sql`` becomes one test: the query is
admitted or refused with the expected rule; admitted queries then run in DuckDB
over the third-party data sets in tests/data (and a small synthetic pair), as written, as admitted
and with the evidence rewrite, and the three must agree on the visible values.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pytest

from jobs.sql_evidence import evidence_columns, with_evidence
from policies.admission import AdmittedQuery, QueryScope, TableScope, admit
from policies.classes import Classification
from policies.errors import PolicyRefusal
from policies.outputs import OutputRole
from tests.conftest import DATA

GOLDEN = Path(__file__).resolve().parent / "golden" / "admission.sql"
PUMS_CSV = DATA / "pums_1000_pid.csv"
CHARITIES = DATA / "charities.parquet"

PUMS = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {
            "pid": "identifier",
            "age": "quasi",
            "sex": "dimension",
            "educ": "dimension",
            "race": "dimension",
            "income": "measure",
            "married": "dimension",
        },
    }
)
PERSONS = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {
            "pid": "identifier",
            "county": "dimension",
            "sex": "dimension",
            "birth_date": "quasi",
            "postcode": "quasi",
        },
        "formats": {"pid": "cn_resident_id"},
    }
)
PAYMENTS = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {
            "pay_id": "identifier",
            "pid": "identifier",
            "amount": "measure",
            "month": "dimension",
        },
    }
)


def charities_classification() -> Classification:
    """Classify every column of the charities file (the classification must cover all)."""
    names = [row[0] for row in duckdb.sql(f"DESCRIBE SELECT * FROM '{CHARITIES}'").fetchall()]
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
    columns = {name: special.get(name, "measure") for name in names}
    classification = Classification.from_dict({"entity_key": "charity", "columns": columns})
    classification.check_against(names)
    return classification


def base_scope() -> QueryScope:
    tables = {
        "pums": TableScope("pums", PUMS),
        "charities": TableScope("charities", charities_classification()),
        "persons": TableScope("persons", PERSONS),
        "payments": TableScope("payments", PAYMENTS),
    }
    return QueryScope(tables=tables)


def resident_id(serial: int) -> str:
    """A GB 11643-shaped ID with a valid check character."""
    body = f"110101{1950 + serial % 50:04d}{1 + serial % 12:02d}{1 + serial % 28:02d}{serial % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


def connect() -> duckdb.DuckDBPyConnection:
    """DuckDB with the four tables of the golden scope."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW pums AS SELECT * FROM read_csv('{PUMS_CSV}')")
    con.execute(f"CREATE VIEW charities AS SELECT * FROM read_parquet('{CHARITIES}')")
    con.execute(
        "CREATE TABLE persons (pid VARCHAR, county VARCHAR, sex INTEGER, "
        "birth_date DATE, postcode VARCHAR)"
    )
    con.execute("CREATE TABLE payments (pay_id VARCHAR, pid VARCHAR, amount DOUBLE, month INTEGER)")
    persons = [
        (
            resident_id(i),
            ["east", "west", "north"][i % 3],
            i % 2,
            datetime.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
            f"{250000 + (i % 7) * 100 + i % 5:06d}",
        )
        for i in range(40)
    ]
    con.executemany("INSERT INTO persons VALUES (?, ?, ?, ?, ?)", persons)
    payments = [
        (f"P{j:05d}", persons[j % 33][0], float((j * 37) % 500 - 50), 1 + j % 12)
        for j in range(150)
    ]
    con.executemany("INSERT INTO payments VALUES (?, ?, ?, ?)", payments)
    return con


@dataclass(frozen=True)
class Case:
    title: str
    sql: str
    verdict: str  # "admitted" or "refused"
    rule: str | None
    tweaks: tuple[str, ...]


def load_cases(path: Path = GOLDEN) -> list[Case]:
    """Parse the golden file: blocks of '-- case:', optional '-- scope:', SQL ';;' verdict."""
    cases: list[Case] = []
    title, tweaks, lines = None, [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("-- case:"):
            title, tweaks, lines = line[len("-- case:") :].strip(), [], []
        elif line.startswith("-- scope:"):
            tweaks.append(line[len("-- scope:") :].strip())
        elif line.startswith("--") or not line or title is None:
            continue
        else:
            lines.append(raw)
            text = "\n".join(lines)
            if ";;" in text:
                sql, verdict = text.rsplit(";;", 1)
                words = verdict.split()
                assert words and words[0] in ("admitted", "refused"), title
                assert (words[0] == "refused") == (len(words) == 2), title
                cases.append(
                    Case(
                        title,
                        sql.strip(),
                        words[0],
                        words[1] if len(words) > 1 else None,
                        tuple(tweaks),
                    )
                )
                title, tweaks, lines = None, [], []
    return cases


def scope_for(case: Case) -> QueryScope:
    scope = base_scope()
    for tweak in case.tweaks:
        if tweak == "dp mode":
            scope = replace(scope, mode="dp")
        elif tweak == "grant expressions":
            scope = replace(scope, aggregate_expressions=True)
        elif tweak.startswith("grant "):
            grants = frozenset(g.strip() for g in tweak[len("grant ") :].split(","))
            scope = replace(scope, extra_aggregates=scope.extra_aggregates | grants)
        elif tweak.startswith("columns "):
            table, _, names = tweak[len("columns ") :].partition("=")
            tables = dict(scope.tables)
            tables[table] = replace(tables[table], columns=frozenset(names.split(",")))
            scope = replace(scope, tables=tables)
        else:
            raise AssertionError(f"unknown scope tweak: {tweak}")
    return scope


CASES = load_cases()


def test_golden_file_is_large_and_covers_every_rule():
    assert len(CASES) >= 60
    rules = {c.rule for c in CASES if c.rule}
    expected = {
        "parse_error", "statement", "table_function", "unknown_table", "single_select",
        "window", "limit", "order_by", "aggregate_filter", "row_level", "distinct",
        "member_aggregate", "aggregate_not_allowed", "aggregate_not_granted",
        "aggregate_expression", "identifier_literal", "identifier_use",
        "measure_outside_aggregate", "quasi_generalisation", "function_not_allowed",
        "column_not_granted", "join", "group_key_not_in_output", "unknown_column",
    }  # fmt: skip
    assert expected <= rules, expected - rules
    assert sum(c.verdict == "admitted" for c in CASES) >= 20


@pytest.fixture(scope="module")
def con():
    connection = connect()
    yield connection
    connection.close()


def _rows(con, sql: str, width: int | None = None) -> list[tuple]:
    rows = con.execute(sql).fetchall()
    norm = []
    for row in rows:
        row = row[:width] if width is not None else row
        norm.append(tuple(round(v, 6) if isinstance(v, float) else v for v in row))
    return sorted(norm, key=repr)


@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
def test_golden(case: Case, con):
    scope = scope_for(case)
    if case.verdict == "refused":
        with pytest.raises(PolicyRefusal) as info:
            admit(case.sql, scope)
        refusal = info.value
        assert refusal.rule == case.rule, str(refusal)
        assert refusal.article == "Art. 15"
        assert "Art. 15" in str(refusal)
        _assert_no_literal_echo(case.sql, str(refusal))
        return
    admitted = admit(case.sql, scope)
    _check_admitted(admitted, case.sql, scope, con)


def _assert_no_literal_echo(sql: str, message: str) -> None:
    """A refusal never shows a constant of the query (a value being probed)."""
    for literal in re.findall(r"'([^']*)'", sql):
        if len(literal) >= 3 and not re.fullmatch(r"[a-z_]+", literal):
            assert literal not in message, (literal, message)
    for number in re.findall(r"(?<![\w.])(\d{2,})(?![\w.])", sql):
        if number not in ("10", "15", "11643"):
            assert not re.search(rf"(?<![\w.]){number}(?![\w.])", message), (number, message)


def _check_admitted(admitted: AdmittedQuery, sql: str, scope: QueryScope, con) -> None:
    spec = admitted.spec
    width = len(spec.columns)
    assert admitted.tables[0] == spec.entity_tables[0]
    # The normalised query means what the operator wrote.
    assert _rows(con, admitted.sql) == _rows(con, sql)
    described = [d[0] for d in con.execute(admitted.sql).description]
    assert described == [c.name for c in spec.columns]
    # The rewrite yields the same visible values, plus every evidence column.
    rewritten = with_evidence(admitted, scope)
    result = con.execute(rewritten)
    names = [d[0] for d in result.description]
    assert names == [c.name for c in spec.columns] + evidence_columns(admitted)
    rows = result.fetchall()
    assert _rows(con, rewritten, width) == _rows(con, admitted.sql)
    # ... of the same types (the one-pass rewrite derives them from per-entity rows).
    original_types = [d[1] for d in con.execute(admitted.sql).description]
    assert [d[1] for d in result.description][:width] == original_types
    n_at = names.index("__n")
    for row in rows:
        assert row[n_at] is not None and row[n_at] >= (1 if spec.group_keys else 0)
        for i, _column in spec.aggregates():
            n_i = row[names.index(f"__n_{i}")]
            assert n_i is not None and 0 <= n_i <= row[n_at]
    for column in spec.columns:
        if column.role is OutputRole.GROUP:
            assert column.group_key in spec.group_keys
    assert spec.grouping_sets and all(set(s) <= set(spec.group_keys) for s in spec.grouping_sets)


def test_distinct_is_rewritten_to_group_by():
    admitted = admit("SELECT DISTINCT sex, race FROM pums", base_scope())
    assert "DISTINCT" not in admitted.sql and "GROUP BY" in admitted.sql
    assert admitted.spec.group_keys == ("sex", "race")


def test_rollup_spec_lists_grouping_sets():
    admitted = admit(
        "SELECT sex, married, COUNT(*) AS n FROM pums GROUP BY ROLLUP (sex, married)", base_scope()
    )
    assert admitted.spec.group_keys == ("sex", "married")
    assert admitted.spec.grouping_sets == (("sex", "married"), ("sex",), ())
    cube = admit("SELECT sex, race, COUNT(*) FROM pums GROUP BY CUBE (sex, race)", base_scope())
    assert set(cube.spec.grouping_sets) == {("sex", "race"), ("sex",), ("race",), ()}


def test_spec_describes_each_output_column():
    admitted = admit(
        "SELECT sex, COUNT(*), COUNT(DISTINCT pid) AS people, SUM(income) s, "
        "round(AVG(income), 1) AS a FROM pums GROUP BY sex",
        base_scope(),
    )
    got = [(c.name, c.role, c.function) for c in admitted.spec.columns]
    assert got == [
        ("sex", OutputRole.GROUP, None),
        ("count", OutputRole.AGGREGATE, "count_star"),
        ("people", OutputRole.AGGREGATE, "count_distinct"),
        ("s", OutputRole.AGGREGATE, "sum"),
        ("a", OutputRole.AGGREGATE, "avg"),
    ]
    assert admitted.tables == ("pums",)


def test_join_lists_first_table_first():
    admitted = admit(
        "SELECT y.month, COUNT(*) AS n FROM payments y JOIN persons p ON y.pid = p.pid "
        "GROUP BY y.month",
        base_scope(),
    )
    assert admitted.tables == ("payments", "persons")
    assert admitted.spec.entity_tables == ("payments",)


def test_refusal_messages_explain_themselves():
    scope = base_scope()
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT sex, COUNT(*) FROM pums WHERE income > 5 GROUP BY sex", scope)
    assert "income may only be used inside SUM, AVG, COUNT" in str(info.value)
    assert info.value.subject == "income"
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT sexx, COUNT(*) FROM pums GROUP BY sexx", scope)
    assert "did you mean 'sex'" in str(info.value)
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT COUNT(*) FROM pumz", scope)
    assert "did you mean 'pums'" in str(info.value)
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT sex, MIN(income) FROM pums GROUP BY sex", scope)
    assert "MIN is not released exactly" in str(info.value)
    assert "DP mode" in str(info.value)
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT sex, MIN(income) FROM pums GROUP BY sex", replace(scope, mode="dp"))
    assert "'min'" in str(info.value)
    granted = replace(scope, extra_aggregates=frozenset({"min"}), mode="dp")
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT sex, COUNT(*) FROM pums WHERE income > 5 GROUP BY sex", granted)
    assert "SUM, AVG, COUNT, MIN" in str(info.value)
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT COUNT(*) FROM pums WHERE pid = 123456789", scope)
    assert "123456789" not in str(info.value) and info.value.rule == "identifier_literal"
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT COUNT(*) FROM pums WHERE sex = 'secret value", scope)
    assert info.value.rule == "parse_error" and "secret" not in str(info.value)


def test_refusal_to_dict_names_rule_and_article():
    with pytest.raises(PolicyRefusal) as info:
        admit("SELECT age, COUNT(*) FROM pums GROUP BY age", base_scope())
    body = info.value.to_dict()
    assert body["rule"] == "quasi_generalisation"
    assert body["article"] == "Art. 15" and body["subject"] == "age"
