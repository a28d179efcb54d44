"""Class disclosure (issue 17, item 2): a count cell holding almost all of its margin.

"95% of county X's persons are women" tells the sex of almost everyone in county X,
though the cell has many contributors. ``policies.disclosure.tables`` suppresses a
count cell holding at least ``class_share`` (90% by default) of its margin's entities,
then secondary suppression treats it like any other suppressed cell.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from policies.disclosure import CellVerdict, DisclosureParams, OutputVerdict, check_output
from policies.outputs import OutputColumn, OutputRole, OutputSpec, grouping_mask
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState


def spec_of(keys: tuple[str, ...], sets: tuple[tuple[str, ...], ...] | None = None) -> OutputSpec:
    columns = [OutputColumn(k, OutputRole.GROUP, group_key=k) for k in keys]
    columns.append(OutputColumn("persons", OutputRole.AGGREGATE, function="count_star"))
    return OutputSpec(tuple(columns), keys, sets if sets is not None else (keys,))


def table_of(spec: OutputSpec, rows: list[tuple[dict, int]]) -> pa.Table:
    """rows: (key values, entities); every entity one row, so the count is the entities.
    A key missing from a row's values is rolled up."""
    data: dict[str, pa.Array] = {}
    for key in spec.group_keys:
        data[key] = pa.array([keys.get(key) for keys, _ in rows], type=pa.string())
    n = [count for _, count in rows]
    data["persons"] = pa.array(n, type=pa.int64())
    masks = [
        grouping_mask(spec, tuple(k for k in spec.group_keys if k in keys)) for keys, _ in rows
    ]
    data["__grouping"] = pa.array(masks, type=pa.int64())
    data["__n"] = pa.array(n, type=pa.int64())
    at = len(spec.group_keys)  # the count's position among the output columns
    data[f"__n_{at}"] = pa.array(n, type=pa.int64())
    data[f"__null_{at}"] = pa.array([0] * len(rows), type=pa.int64())
    return pa.table(data)


def judged(result, spec: OutputSpec, rows: list[tuple[dict, int]]) -> dict[tuple, tuple]:
    """Each reported cell's keys -> its rules, for the cells that are suppressed."""
    labels = {i: tuple(keys.get(k) for k in spec.group_keys) for i, (keys, _) in enumerate(rows)}
    return {labels[c.row]: c.rules for c in result.cells if c.verdict is CellVerdict.SUPPRESS}


BY_COUNTY_SEX = spec_of(("county", "sex"))


def test_almost_everyone_in_a_county_in_one_sex_cell_is_suppressed():
    rows = [
        ({"county": "X", "sex": "F"}, 95),
        ({"county": "X", "sex": "M"}, 5),
        ({"county": "Y", "sex": "F"}, 50),
        ({"county": "Y", "sex": "M"}, 40),  # 40 of the 45 men: 88.9%, below the share
    ]
    result = check_output(table_of(BY_COUNTY_SEX, rows), BY_COUNTY_SEX, DisclosureParams())
    held = judged(result, BY_COUNTY_SEX, rows)
    assert held[("X", "F")] == ("class",)  # 95 entities: the threshold alone lets it pass
    assert held[("X", "M")] == ("threshold",)
    assert ("Y", "F") not in held and ("Y", "M") not in held
    assert result.counts["class"] == 1
    assert result.released.column("persons").to_pylist() == [None, None, 50, 40]
    assert "(class)" in result.summary_text()


def test_a_cell_with_all_of_its_margin_beside_a_zero_is_suppressed():
    """GROUP BY emits no zero row: county X has women only, so the sum along sex (the
    margin the output lacks) is the cell itself, 100%."""
    rows = [
        ({"county": "X", "sex": "F"}, 12),
        ({"county": "Y", "sex": "F"}, 40),
        ({"county": "Y", "sex": "M"}, 38),
        ({"county": "Z", "sex": "F"}, 25),
        ({"county": "Z", "sex": "M"}, 30),
    ]
    result = check_output(table_of(BY_COUNTY_SEX, rows), BY_COUNTY_SEX, DisclosureParams())
    assert judged(result, BY_COUNTY_SEX, rows) == {("X", "F"): ("class",)}
    assert result.verdict is OutputVerdict.RELEASED_WITH_SUPPRESSIONS


def test_the_margin_row_is_read_when_the_output_has_it_and_the_cell_gets_a_partner():
    """With ROLLUP(county, sex) the margin is the county row's evidence; a class cell is
    then protected by complementary suppression like any other suppressed cell."""
    spec = spec_of(("county", "sex"), (("county", "sex"), ("county",), ()))
    rows = [
        ({"county": "X", "sex": "F"}, 95),
        ({"county": "X", "sex": "M"}, 10),
        ({"county": "X"}, 105),
        ({"county": "Y", "sex": "F"}, 50),
        ({"county": "Y", "sex": "M"}, 48),
        ({"county": "Y"}, 98),
        ({}, 203),
    ]
    result = check_output(table_of(spec, rows), spec, DisclosureParams())
    held = judged(result, spec, rows)
    # 95 of 105 is 90.5%: the county's women are suppressed; 10 men would give them
    # back from the county's total, so they are held back too
    assert held == {("X", "F"): ("class",), ("X", "M"): ("complementary",)}


def test_a_margin_row_with_more_entities_than_its_cells_is_what_counts():
    spec = spec_of(("county", "sex"), (("county", "sex"), ("county",)))
    rows = [
        ({"county": "X", "sex": "F"}, 95),
        ({"county": "X", "sex": "M"}, 5),
        ({"county": "X"}, 120),  # 20 entities with a NULL sex are in the margin only
    ]
    result = check_output(table_of(spec, rows), spec, DisclosureParams())
    assert result.counts["class"] == 0  # 95 of 120: 79%


def test_the_share_is_a_parameter():
    rows = [
        ({"county": "X", "sex": "F"}, 95),
        ({"county": "X", "sex": "M"}, 5),
        ({"county": "Y", "sex": "F"}, 60),
        ({"county": "Y", "sex": "M"}, 70),
    ]
    looser = DisclosureParams(class_share=0.96)
    result = check_output(table_of(BY_COUNTY_SEX, rows), BY_COUNTY_SEX, looser)
    assert ("X", "F") not in judged(result, BY_COUNTY_SEX, rows)
    exact = DisclosureParams(class_share=0.95)  # at least the share: 95% fires
    result = check_output(table_of(BY_COUNTY_SEX, rows), BY_COUNTY_SEX, exact)
    assert judged(result, BY_COUNTY_SEX, rows)[("X", "F")] == ("class",)
    # an agreement may only lower the share (stricter), never raise it
    assert DisclosureParams().tightened({"class_share": 0.96}).class_share == 0.90
    assert DisclosureParams().tightened({"class_share": 0.5}).class_share == 0.5


def test_a_one_key_table_is_not_judged_against_the_whole_population():
    spec = spec_of(("county",))
    rows = [({"county": "X"}, 950), ({"county": "Y"}, 50)]
    result = check_output(table_of(spec, rows), spec, DisclosureParams())
    assert result.verdict is OutputVerdict.RELEASED


def test_a_rollup_judges_only_the_margins_it_lists():
    """Towns nest in counties: ROLLUP(county, town) lists no town total over counties,
    and "everyone in town t lives in county c" is no disclosure."""
    spec = spec_of(("county", "town"), (("county", "town"), ("county",), ()))
    rows = [
        ({"county": "X", "town": "t1"}, 30),
        ({"county": "X", "town": "t2"}, 25),
        ({"county": "X"}, 55),
        ({"county": "Y", "town": "t3"}, 40),
        ({"county": "Y", "town": "t4"}, 20),
        ({"county": "Y"}, 60),
        ({}, 115),
    ]
    result = check_output(table_of(spec, rows), spec, DisclosureParams())
    assert result.verdict is OutputVerdict.RELEASED


# --- through the job path, with a declared grid: secondary suppression by the audit -------

CLASSIFICATION = {
    "entity_key": "fid",
    "entity_kind": "organisation",
    "columns": {"fid": "identifier", "county": "dimension", "owner": "dimension"},
    "domains": {"county": {"codes": ["X", "Y", "Z"]}, "owner": {"codes": ["public", "private"]}},
}


def _run(platform, provider, make_principal, tmp_path, rows, sql):
    path = tmp_path / "firms.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    vault.register(platform, provider, "firms", str(path), Classification.from_dict(CLASSIFICATION))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            bank = by_name(conn, "bank")
        outcome = service.submit(bank, {"sql": sql})
        whole = service.outcome(authority, outcome.job_id)
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, (outcome.state, whole.report)
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    return table, whole.report


@pytest.mark.parametrize("margins", [False, True])
def test_a_county_of_private_firms_only_is_not_released(
    platform, provider, make_principal, tmp_path, margins
):
    """County X has 12 private firms and no public one: the declared grid adds the empty
    (X, public) row, suppressed; (X, private) holds 100% of the county and is suppressed
    by the class rule; with the county totals released, the audit's pattern keeps it
    so (a range that reaches below 90% of the county)."""
    rows = [{"fid": f"X{i}", "county": "X", "owner": "private"} for i in range(12)]
    for county in ("Y", "Z"):
        for owner, n in (("public", 30), ("private", 35)):
            rows += [
                {"fid": f"{county}{owner}{i}", "county": county, "owner": owner} for i in range(n)
            ]
    group = "ROLLUP (county, owner)" if margins else "county, owner"
    sql = f"SELECT county, owner, COUNT(*) AS n FROM firms GROUP BY {group} ORDER BY county, owner"
    table, report = _run(platform, provider, make_principal, tmp_path, rows, sql)
    found = {(r["county"], r["owner"]): r["n"] for r in table.to_pylist()}
    assert found[("X", "private")] is None and found[("X", "public")] is None
    assert found[("Y", "private")] == 35 and found[("Z", "public")] == 30
    rules = {r for c in report["cells"] for r in c["rules"]}
    assert "class" in rules
    if margins:
        assert found[("X", None)] in (None, 12)  # released or not, the share stays hidden
