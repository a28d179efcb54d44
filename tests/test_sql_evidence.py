"""The evidence rewrite on hand-made tables in a real DuckDB.

Each test builds a tiny table whose evidence is known by hand (who contributes
how much to which cell) and checks the rewritten query's evidence columns.
"""

from __future__ import annotations

import duckdb
import pytest

from jobs.sql_evidence import evidence_columns, with_evidence
from policies.admission import QueryScope, TableScope, admit
from policies.classes import Classification
from policies.errors import PolicyRefusal

PEOPLE = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {
            "pid": "identifier",
            "sex": "dimension",
            "region": "dimension",
            "age": "quasi",
            "income": "measure",
        },
    }
)
SHOPS = Classification.from_dict(
    {"entity_key": "pid", "columns": {"pid": "identifier", "kind": "dimension"}}
)
SCOPE = QueryScope(
    tables={"people": TableScope("people", PEOPLE), "shops": TableScope("shops", SHOPS)},
    extra_aggregates=frozenset({"max", "median"}),
    mode="dp",  # the granted aggregates' evidence: table mode refuses them before any rewrite
)

# pid 1: three rows of 100 (one entity, 300 in all); pid 2: 50 and NULL; pid 3: -20;
# pid 4: region NULL (a real NULL key), 10; pid 5: income 0.
ROWS = [
    (1, 1, "a", 31, 100.0),
    (1, 1, "a", 31, 100.0),
    (1, 1, "a", 31, 100.0),
    (2, 0, "a", 45, 50.0),
    (2, 0, "a", 45, None),
    (3, 0, "b", 52, -20.0),
    (4, 1, None, 38, 10.0),
    (5, 1, "b", 29, 0.0),
]


@pytest.fixture()
def con():
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE people (pid INTEGER, sex INTEGER, region VARCHAR, age INTEGER, income DOUBLE)"
    )
    connection.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", ROWS)
    connection.execute("CREATE TABLE shops (pid INTEGER, kind VARCHAR)")
    connection.executemany(
        "INSERT INTO shops VALUES (?, ?)", [(1, "x"), (1, "y"), (2, "x"), (3, "x")]
    )
    yield connection
    connection.close()


def run(con, sql: str) -> list[dict]:
    admitted = admit(sql, SCOPE)
    result = con.execute(with_evidence(admitted, SCOPE))
    names = [d[0] for d in result.description]
    assert names == [c.name for c in admitted.spec.columns] + evidence_columns(admitted)
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def test_one_entity_with_three_rows_counts_once(con):
    (row,) = run(
        con,
        "SELECT SUM(income) AS total FROM people WHERE sex = 1 AND region = 'a'",
    )
    assert row["total"] == 300.0
    assert row["__n"] == 1 and row["__n_0"] == 1
    assert row["__top1_0"] == 300.0 and row["__top2_0"] is None
    assert row["__total_0"] == 300.0 and row["__neg_0"] == 0 and row["__null_0"] == 0
    assert row["__grouping"] == 0


def test_sum_evidence_per_group(con):
    rows = {r["sex"]: r for r in run(con, "SELECT sex, SUM(income) AS s FROM people GROUP BY sex")}
    women, men = rows[0], rows[1]
    # sex 0: pid 2 (50, NULL) and pid 3 (-20)
    assert women["s"] == 30.0 and women["__n"] == 2 and women["__n_1"] == 2
    assert women["__top1_1"] == 50.0 and women["__top2_1"] == -20.0
    assert women["__neg_1"] == 1 and women["__null_1"] == 1 and women["__total_1"] == 30.0
    # sex 1: pid 1 (300), pid 4 (10), pid 5 (0: not a contributor to a SUM)
    assert men["s"] == 310.0 and men["__n"] == 3 and men["__n_1"] == 2
    assert men["__top1_1"] == 300.0 and men["__top2_1"] == 10.0 and men["__neg_1"] == 0


def test_count_and_avg_and_granted_aggregates(con):
    (row,) = run(
        con,
        "SELECT COUNT(*) AS n, COUNT(income) AS c, COUNT(DISTINCT pid) AS d, "
        "AVG(income) AS a, MAX(income) AS m FROM people",
    )
    assert (row["n"], row["c"], row["d"]) == (8, 7, 5)
    assert row["__n"] == 5
    assert row["__n_0"] == 5 and row["__null_0"] == 0 and row["__total_0"] is None
    assert row["__n_1"] == 5 and row["__null_1"] == 1
    assert row["__n_2"] == 5 and row["__top1_2"] is None
    # AVG: every entity with a non-null income contributes, also the zero
    assert row["__n_3"] == 5 and row["__top1_3"] == 300.0 and row["__neg_3"] == 1
    assert row["__n_4"] == 5 and row["__total_4"] is None and row["__null_4"] == 1


def test_rollup_tells_real_null_from_margin(con):
    rows = run(
        con,
        "SELECT region, COUNT(*) AS n, SUM(income) AS s FROM people "
        "GROUP BY ROLLUP (region) ORDER BY region DESC",
    )
    by_key = {(r["region"], r["__grouping"]): r for r in rows}
    assert set(by_key) == {("a", 0), ("b", 0), (None, 0), (None, 1)}
    assert by_key[(None, 0)]["__n"] == 1 and by_key[(None, 0)]["n"] == 1  # pid 4
    assert by_key[(None, 1)]["__n"] == 5 and by_key[(None, 1)]["n"] == 8  # the total
    assert by_key[("a", 0)]["__top1_2"] == 300.0
    assert [r["region"] for r in rows][:2] == ["b", "a"]  # the admitted ORDER BY is kept


def test_having_is_refused_before_any_rewrite():
    with pytest.raises(PolicyRefusal) as info:  # issue 17: a filter on an aggregate's value
        admit("SELECT region, COUNT(*) AS n FROM people GROUP BY region HAVING COUNT(*) > 1", SCOPE)
    assert info.value.rule == "aggregate_filter"


def test_generalised_group_key(con):
    rows = run(
        con,
        "SELECT floor(age / 10) * 10 AS band, SUM(income) AS s FROM people GROUP BY band ORDER BY band",
    )
    assert [(r["band"], r["__n"]) for r in rows] == [(20.0, 1), (30.0, 2), (40.0, 1), (50.0, 1)]
    assert rows[1]["__top1_1"] == 300.0 and rows[1]["__top2_1"] == 10.0


def test_join_counts_entities_of_the_first_table(con):
    rows = run(
        con,
        "SELECT s.kind, COUNT(*) AS n, SUM(p.income) AS s FROM people p "
        "JOIN shops s ON p.pid = s.pid GROUP BY s.kind",
    )
    by_kind = {r["kind"]: r for r in rows}
    # kind x: pid 1 (3 rows), pid 2 (2 rows), pid 3 (1 row)
    assert by_kind["x"]["n"] == 6 and by_kind["x"]["__n"] == 3
    assert by_kind["x"]["__top1_2"] == 300.0
    assert by_kind["y"]["__n"] == 1 and by_kind["y"]["__n_1"] == 1


def test_global_aggregate_over_no_rows(con):
    (row,) = run(con, "SELECT COUNT(*) AS n, SUM(income) AS s FROM people WHERE sex = 7")
    assert row["n"] == 0 and row["s"] is None
    assert row["__n"] == 0 and row["__n_1"] == 0 and row["__top1_1"] is None


def test_distinct_rows_get_contributor_counts(con):
    rows = run(con, "SELECT DISTINCT region FROM people")
    assert {r["region"]: r["__n"] for r in rows} == {"a": 2, "b": 2, None: 1}


def test_rewrite_does_not_change_the_admitted_sql(con):
    admitted = admit("SELECT sex, SUM(income) AS s FROM people GROUP BY sex", SCOPE)
    before = admitted.sql
    with_evidence(admitted, SCOPE)
    assert admitted.tree.sql(dialect="duckdb") == before
