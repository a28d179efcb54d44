"""Attacks across releases, as an operator would run them, through the real JobService.

Every job runs in a real worker over pums_1000_pid.csv; the released product is
read back from the platform's product folder, exactly what the operator gets.
Each attack test states what the attacker would learn and asserts that the
second (or last) release withholds it: the cell is empty, the rule is
``differencing`` and the article Art. 15.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from pyroaring import BitMap

from policies.differencing import Condition, DiffVerdict, HistoryIndex, check, check_cells
from sandbox.core.principals import Role, by_name
from sandbox.data.grants import add_grant
from sandbox.guard.history import History, released_count
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState


@pytest.fixture
def authority(make_principal):
    return make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]


@pytest.fixture
def bank(make_principal):
    return make_principal("bank", Role.OPERATOR)[0]


@pytest.fixture
def rival(make_principal):
    return make_principal("rival", Role.OPERATOR)[0]


@pytest.fixture
def service(platform, pums_dataset, authority, bank, rival):
    for name in ("bank", "rival"):
        add_grant(platform, authority, name, "pums", until="2099-01-01")
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def checked(service, outcome):
    """The job as the authority reads it, with the whole check report: its operator is
    told which cells are suppressed, never why (issue 17, no oracle)."""
    with service.platform.store.read() as conn:
        authority = by_name(conn, "city")
    return service.outcome(authority, outcome.job_id)


def run(platform, service, operator, sql: str):
    """Submit; return (outcome, released rows as dicts, cells of the report by row)."""
    outcome = checked(service, service.submit(operator, {"sql": sql}))
    assert outcome.state is JobState.RELEASED, (outcome.state, outcome.reason, outcome.report)
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    assert not any(c.startswith("__") for c in table.column_names)  # no evidence leaves
    cells = {}
    for cell in outcome.report["cells"]:
        cells.setdefault(cell["row"], []).append(cell)
    return outcome, table.to_pylist(), cells


def withheld_by_differencing(platform, service, operator, sql: str) -> dict:
    """A one-cell output whose only cell is suppressed: nothing leaves, the job is withheld."""
    outcome = checked(service, service.submit(operator, {"sql": sql}))
    assert outcome.state is JobState.WITHHELD, (outcome.state, outcome.reason)
    assert outcome.product_id is None and outcome.report["verdict"] == "refused"
    [cell] = outcome.report["cells"]
    assert cell["verdict"] == "suppress" and cell["rules"] == ["differencing"], cell
    assert "Art. 15" in outcome.report["summary"]
    return outcome.report


def differenced(cells: dict, row: int) -> bool:
    return any(
        c["verdict"] == "suppress" and "differencing" in c["rules"] for c in cells.get(row, [])
    )


TOTAL_BY_SEX = "SELECT sex, SUM(income) AS total FROM pums GROUP BY sex ORDER BY sex"


def test_n_versus_n_minus_one_by_filter(platform, service, bank):
    """Attacker: income of men aged 37 = total(men) - total(men, age <> 37); 9 men are 37."""
    _, first, _ = run(platform, service, bank, TOTAL_BY_SEX)
    assert all(r["total"] is not None for r in first)
    outcome, second, cells = run(
        platform, service, bank, TOTAL_BY_SEX.replace("GROUP BY", "WHERE age <> 37 GROUP BY")
    )
    men = next(i for i, r in enumerate(second) if r["sex"] == 1)
    women = next(i for i, r in enumerate(second) if r["sex"] == 0)
    assert second[men]["total"] is None and differenced(cells, men)
    # 13 women are 37: at least k = 10, so their row may leave.
    assert second[women]["total"] is not None and not differenced(cells, women)
    assert outcome.report["counts"]["differencing"] == 1
    assert "differencing" in outcome.report["summary"] and "Art. 15" in outcome.report["summary"]


def test_nested_ranges_on_a_quasi_identifier(platform, service, bank):
    """Attacker: total(age <= 67) - total(age <= 66) is the income of the eight 67-year-olds."""
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums WHERE age <= 66")
    withheld_by_differencing(
        platform, service, bank, "SELECT SUM(income) AS total FROM pums WHERE age <= 67"
    )


def test_the_same_attack_split_across_two_operators(platform, service, bank, rival):
    """One operator releases the total, another the total less two 87-year-olds."""
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums")
    withheld_by_differencing(
        platform, service, rival, "SELECT SUM(income) AS total FROM pums WHERE age <> 87"
    )


def test_union_of_released_parts_leaving_a_small_remainder(platform, service, bank):
    """Attacker: total(educ 9 or 11 or age 87) - total(educ 9) - total(educ 11) = two people."""
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums WHERE educ = 9")
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums WHERE educ = 11")
    withheld_by_differencing(
        platform,
        service,
        bank,
        "SELECT SUM(income) AS total FROM pums WHERE educ IN (9, 11) OR age = 87",
    )


def test_a_cell_inside_an_earlier_total_with_its_complement_pinned(platform, service, bank):
    """Attacker: total - men - (women not aged 81) = the two women aged 81."""
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums")
    run(platform, service, bank, "SELECT SUM(income) AS total FROM pums WHERE sex = 1")
    withheld_by_differencing(
        platform,
        service,
        bank,
        "SELECT SUM(income) AS total FROM pums WHERE sex = 0 AND age <> 81",
    )


def test_an_individual_tracker_with_padding(platform, service, bank):
    """Tracker: pad the 9 men aged 37 with everyone of educ 9; (pad + target) - pad."""
    run(platform, service, bank, "SELECT COUNT(*) AS n, SUM(income) AS t FROM pums WHERE educ = 9")
    outcome = checked(
        service,
        service.submit(
            bank,
            {
                "sql": "SELECT COUNT(*) AS n, SUM(income) AS t FROM pums "
                "WHERE educ = 9 OR (age = 37 AND sex = 1)"
            },
        ),
    )
    assert outcome.state is JobState.WITHHELD and outcome.product_id is None
    assert outcome.report["counts"]["differencing"] == 2  # both cells of the row


def test_a_table_and_its_margin_inside_one_output(platform, service, bank):
    """Three small education groups are suppressed by the threshold, but total minus the
    released big group would give their sum: the differencing check within the output
    holds the big group back, complementary suppression then runs again."""
    outcome, rows, cells = run(
        platform,
        service,
        bank,
        "SELECT educ, SUM(income) AS t FROM pums "
        "WHERE educ = 9 OR (age BETWEEN 60 AND 61 AND educ IN (1, 7, 8)) "
        "GROUP BY ROLLUP (educ) ORDER BY educ NULLS LAST",
    )
    total = next(i for i, r in enumerate(rows) if r["educ"] is None)
    big = next(i for i, r in enumerate(rows) if r["educ"] == 9)
    released = [r for r in rows if r["t"] is not None]
    # What is released cannot be combined into the three small groups' sum.
    assert len(released) <= 1
    assert rows[big]["t"] is None and differenced(cells, big)
    assert rows[total]["t"] is not None
    assert outcome.report["counts"]["differencing"] >= 1


def test_benign_repeats_and_disjoint_groups_pass(platform, service, bank, rival):
    _, first, _ = run(platform, service, bank, TOTAL_BY_SEX)
    outcome, again, _ = run(platform, service, rival, TOTAL_BY_SEX)
    assert again == first and outcome.report["counts"].get("differencing", 0) == 0
    _, by_educ, cells = run(
        platform, service, bank, "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ"
    )
    assert not any(differenced(cells, r) for r in range(len(by_educ)))
    with platform.store.read() as conn:
        assert released_count(conn, "pums") == 2 + 2 + 16


def test_extremes_through_min_max_or_order_by_are_refused_at_admission(platform, service, bank):
    """MIN/MAX reveal one person's value; they need a grant, which this operator lacks."""
    outcome = service.submit(bank, {"sql": "SELECT MAX(income) AS top FROM pums"})
    assert outcome.state is JobState.REFUSED and outcome.reason["article"] == "Art. 15"
    outcome = service.submit(bank, {"sql": "SELECT income FROM pums ORDER BY income DESC"})
    assert outcome.state is JobState.REFUSED


def test_the_defence_can_be_switched_off_by_setting(tmp_path, pums_csv, pums_classification):
    """With differencing.enabled = false the N-1 attack goes through (what the defence stops)."""
    from sandbox.core import principals
    from sandbox.core.ledger import now_utc
    from sandbox.core.platform import Platform
    from sandbox.data import vault

    home = tmp_path / "off"
    Platform.init(home).close()
    (home / "sandbox.toml").write_text("[differencing]\nenabled = false\n")
    platform = Platform.open(home)
    with platform.store.transaction() as conn:
        prov, _ = principals.insert(conn, "prov", Role.PROVIDER, "p", None, now_utc())
        auth, _ = principals.insert(conn, "city", Role.AUTHORITY, "a", "city", now_utc())
        op, _ = principals.insert(conn, "op", Role.OPERATOR, "o", None, now_utc())
    vault.register(platform, prov, "pums", str(pums_csv), pums_classification)
    add_grant(platform, auth, "op", "pums", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        run(platform, service, op, "SELECT SUM(income) AS t FROM pums")
        _, rows, _ = run(platform, service, op, "SELECT SUM(income) AS t FROM pums WHERE age <> 87")
        assert rows[0]["t"] is not None
    finally:
        service.close()
        platform.close()


# --------------------------------------------------------------------------- the pure check


def test_the_three_conditions_and_the_complement_on_bitmaps():
    index = HistoryIndex()
    index.add(BitMap(range(100)))
    near = check(BitMap(range(95)), index, 10)
    assert near.verdict is DiffVerdict.SUPPRESS and near.condition is Condition.INSIDE
    assert check(BitMap(range(105)), index, 10).condition is Condition.NEAR
    assert check(BitMap(range(100)), index, 10).verdict is DiffVerdict.PASS  # a repeat
    assert check(BitMap(range(80)), index, 10).verdict is DiffVerdict.PASS
    index.add(BitMap(range(200, 300)))
    union = check(BitMap([*range(100), *range(200, 300), 500]), index, 10)
    assert union.condition is Condition.UNION
    index.add(BitMap(range(1000)))
    index.add(BitMap(range(100, 200)))
    complement = check(BitMap(range(300, 997)), index, 10)  # [0,1000) - [0,300) - it = 3
    assert complement.condition is Condition.COMPLEMENT
    assert "3" not in complement.summary and "997" not in complement.summary


def test_within_one_output_the_largest_cells_go_first():
    findings = check_cells([BitMap(range(50)), BitMap(range(53)), None], HistoryIndex(), 10)
    assert findings[1].verdict is DiffVerdict.PASS
    assert findings[0].verdict is DiffVerdict.SUPPRESS and findings[2] is None


def _numbers(history: History, platform, keys: list[str]) -> list[int]:
    with platform.store.transaction() as conn:
        (bitmap,) = history.bitmaps(conn, "d", [keys])
    return sorted(bitmap)


def test_entity_numbers_stay_one_numbering_across_processes_and_rollbacks(platform):
    """Two caches (two server processes) number entities of one dataset alike, a
    rolled-back numbering leaves no phantom numbers behind, and numbers given by this
    process are taken into its cache without reading them back only when the store
    holds exactly them."""
    mine, theirs = History(), History()
    with pytest.raises(RuntimeError):
        with platform.store.transaction() as conn:
            mine.bitmaps(conn, "d", [["a", "b"]])
            raise RuntimeError("the release failed after numbering")
    assert _numbers(theirs, platform, ["c"]) == [0]  # a and b were never stored
    assert _numbers(mine, platform, ["c", "a"]) == [0, 1]  # c read back, a numbered anew
    assert _numbers(theirs, platform, ["d", "e"]) == [2, 3]  # others number in between
    assert _numbers(mine, platform, ["a", "b", "d"]) == [1, 2, 4]
    with platform.store.read() as conn:
        rows = conn.exec_driver_sql("SELECT entity_key, number FROM entity_numbers").all()
    stored = {key: number for key, number in rows}
    assert stored == {"c": 0, "a": 1, "d": 2, "e": 3, "b": 4}
    for key, number in stored.items():  # both caches agree with the store, key by key
        assert _numbers(mine, platform, [key]) == [number]
        assert _numbers(theirs, platform, [key]) == [number]
