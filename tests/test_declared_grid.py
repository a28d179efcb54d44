"""Outputs list every combination of their keys' declared codes (issue 17, item 2).

``GROUP BY`` emits only the groups the data has: the presence of a row says someone
is in it, and a zero count never reaches the zero rule. Over keys with declared code
lists, the released table has the same rows whatever the data holds; the empty ones
are suppressed like small ones.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState

SECTORS = [f"S{i:02d}" for i in range(30)]
COUNTIES = ["north", "south", "east", "west"]
CLASSIFICATION = {
    "entity_key": "fid",
    "entity_kind": "organisation",
    "columns": {
        "fid": "identifier",
        "county": "dimension",
        "sector": "dimension",
        "staff": "measure",
    },
    "domains": {"county": {"codes": COUNTIES}, "sector": {"codes": SECTORS}},
}


def _firms(sectors: int, extra: list[dict] | None = None) -> list[dict]:
    rows = [
        {
            "fid": f"F{p:05d}",
            "county": COUNTIES[p % 4],
            "sector": SECTORS[p % sectors],
            "staff": 3 + p % 7,
        }
        for p in range(40 * sectors)
    ]
    return rows + (extra or [])


def _released(platform, provider, make_principal, tmp_path, rows, sql):
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
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, (outcome.state, outcome.reason)
    return pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")


BY_SECTOR = (
    "SELECT sector, COUNT(*) AS n, SUM(staff) AS staff FROM firms GROUP BY sector ORDER BY sector"
)


def test_every_declared_code_is_a_row_and_the_empty_ones_are_suppressed(
    platform, provider, make_principal, tmp_path
):
    table = _released(platform, provider, make_principal, tmp_path, _firms(10), BY_SECTOR)
    rows = table.to_pylist()
    assert [r["sector"] for r in rows] == SECTORS  # all 30, in ORDER BY order
    for r in rows[:10]:
        assert r["n"] == 40 and r["staff"] is not None
    for r in rows[10:]:  # nobody there: suppressed like a small cell, not a visible zero
        assert r["n"] is None and r["staff"] is None


@pytest.mark.parametrize("lone", [False, True])
def test_the_rows_released_do_not_say_whether_a_group_has_anyone(
    platform, provider, make_principal, tmp_path, lone
):
    """One firm alone in sector S29, or none: the same rows come out, the cell empty."""
    extra = [{"fid": "LONE", "county": "north", "sector": "S29", "staff": 900}] if lone else []
    table = _released(platform, provider, make_principal, tmp_path, _firms(10, extra), BY_SECTOR)
    assert table.column("sector").to_pylist() == SECTORS
    last = table.to_pylist()[-1]
    # the same whether the group has one firm or none: empty cells flagged as suppressed
    assert last == {
        "sector": "S29",
        "n": None,
        "n_flag": "suppressed",
        "staff": None,
        "staff_flag": "suppressed",
    }


def test_margins_list_their_declared_codes_too(platform, provider, make_principal, tmp_path):
    sql = (
        "SELECT county, sector, COUNT(*) AS n FROM firms "
        "GROUP BY ROLLUP (county, sector) ORDER BY county, sector"
    )
    table = _released(platform, provider, make_principal, tmp_path, _firms(10), sql)
    keys = list(
        zip(table.column("county").to_pylist(), table.column("sector").to_pylist(), strict=True)
    )
    assert len(keys) == 4 * 30 + 4 + 1 == len(set(keys))
    assert {(c, s) for c in COUNTIES for s in SECTORS} <= set(keys)
    assert {(c, None) for c in COUNTIES} | {(None, None)} <= set(keys)
