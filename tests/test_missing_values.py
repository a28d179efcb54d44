"""ACRO's risk appetite for missing values (issue 17: "missing values always pass").

ACRO's ``check_missing_values`` holds back a cell that left out rows with a missing
value. Here it is the disclosure parameter ``missing_cells`` (pass, review, suppress):
the platform's setting ``disclosure.missing_cells`` is the minimum, and a grant or an
agreement may only make it stricter.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from policies.disclosure import CellVerdict, DisclosureParams
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState

CLASSIFICATION = {
    "entity_key": "pid",
    "columns": {"pid": "identifier", "county": "dimension", "income": "measure"},
}
SQL = "SELECT county, SUM(income) AS income FROM d GROUP BY county ORDER BY county"


def _rows() -> list[dict]:
    # north: every income known; south: a few unknown
    rows = [{"pid": f"N{i}", "county": "north", "income": 1000.0 + i} for i in range(30)]
    rows += [
        {"pid": f"S{i}", "county": "south", "income": None if i < 3 else 900.0 + i}
        for i in range(30)
    ]
    return rows


def _run(platform, provider, make_principal, tmp_path, disclosure):
    path = tmp_path / "d.csv"
    pacsv.write_csv(pa.Table.from_pylist(_rows()), path)
    vault.register(platform, provider, "d", str(path), Classification.from_dict(CLASSIFICATION))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", "d", until="2099-01-01", disclosure=disclosure)
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            bank = by_name(conn, "bank")
        return service.submit(bank, {"sql": SQL})
    finally:
        service.close()


def test_by_default_missing_values_are_a_note(platform, provider, make_principal, tmp_path):
    outcome = _run(platform, provider, make_principal, tmp_path, None)
    assert outcome.state is JobState.RELEASED
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    assert None not in table.column("income").to_pylist()


def test_a_grant_may_hold_back_cells_with_missing_values(
    platform, provider, make_principal, tmp_path
):
    outcome = _run(platform, provider, make_principal, tmp_path, {"missing_cells": "suppress"})
    assert outcome.state is JobState.RELEASED
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    assert table.to_pylist()[0]["income"] is not None  # north: nothing missing
    assert table.to_pylist()[1]["income"] is None  # south: three incomes unknown


def test_the_platform_setting_is_a_minimum_an_agreement_cannot_lower(platform):
    platform.settings = platform.settings.changed(**{"disclosure.missing_cells": "review"})
    minimums = platform.disclosure_minimums()
    assert minimums.missing_cells is CellVerdict.REVIEW
    assert minimums.tightened({"missing_cells": "pass"}).missing_cells is CellVerdict.REVIEW
    assert minimums.tightened({"missing_cells": "suppress"}).missing_cells is CellVerdict.SUPPRESS
    with pytest.raises(Exception, match="missing_cells"):
        DisclosureParams(missing_cells=CellVerdict.PASS).check_not_below(minimums)
