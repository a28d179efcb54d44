"""Declared domains: sizes, values, grids, person jobs, and data checked against its declaration."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from policies.classes import Classification
from policies.domains import (
    MAX_DOMAIN_VALUES,
    Bands,
    Codes,
    Range,
    canonical,
    check_values,
    declared_values,
    domain_of,
    domain_size,
    domain_to_dict,
    grid,
    grid_size,
    is_person_job,
    values_outside,
)
from policies.errors import ClassificationError
from sandbox.demo.data import COUNTIES, DEMO_TABLES, INDUSTRIES, demo_tables

PERSONS = {
    "entity_key": "pid",
    "entity_kind": "person",
    "columns": {
        "pid": "identifier",
        "sex": "dimension",
        "county": "dimension",
        "birth_date": "quasi",
        "income_band": "dimension",
        "age": "public",
        "income": "measure",
    },
    "domains": {
        "sex": {"codes": ["男", "女"]},
        "county": {"codes": ["任城区", "兖州区", "微山县"]},
        "birth_date": {"range": {"from": 1990, "to": 1999}},
        "income_band": {"bands": {"from": 0, "to": 200_000, "width": 10_000}},
        "age": {"bands": {"edges": [0, 18, 65, 120]}},
    },
}
FIRMS = {
    "entity_key": "code",
    "entity_kind": "organisation",
    "columns": {"code": "identifier", "county": "dimension", "capital": "measure"},
    "domains": {"county": {"codes": ["任城区", "兖州区"]}},
}
UNDECLARED = {"entity_key": "k", "columns": {"k": "identifier", "county": "dimension"}}


@pytest.fixture
def classifications() -> dict[str, Classification]:
    return {
        "persons": Classification.from_dict(PERSONS),
        "firms": Classification.from_dict(FIRMS),
        "loose": Classification.from_dict(UNDECLARED),
    }


def test_sizes_and_values_of_each_kind_of_domain():
    assert domain_size(Codes(("a", "b", "c"))) == 3
    assert declared_values(Codes((3, 1, 2))) == [3, 1, 2]  # the declared order
    bands = Bands((0, 10_000, 20_000))
    assert domain_size(bands) == 2 and declared_values(bands) == [0, 10_000]
    assert bands.width == 10_000 and Bands((0, 18, 65)).width is None
    assert domain_size(Range(2015, 2025)) == 11
    assert declared_values(Range(2015, 2017)) == [2015, 2016, 2017]
    assert domain_size(Range(2025, 2025)) == 1


def test_the_file_shapes_become_domains(classifications):
    persons = classifications["persons"]
    assert persons.domains["sex"] == Codes(("男", "女"))
    assert persons.domains["birth_date"] == Range(1990, 1999)
    band = persons.domains["income_band"]
    assert isinstance(band, Bands) and domain_size(band) == 20 and band.edges[-1] == 200_000
    assert persons.domains["age"] == Bands((0, 18, 65, 120))
    assert domain_to_dict(band) == {"bands": {"from": 0, "to": 200_000, "width": 10_000}}
    assert domain_to_dict(Bands((0, 18, 65))) == {"bands": {"edges": [0, 18, 65]}}
    assert domain_to_dict(Range(1, 2)) == {"range": {"from": 1, "to": 2}}


def test_grid_size_is_the_product_of_the_domain_sizes(classifications):
    keys = [("persons", "county"), ("persons", "sex"), ("persons", "birth_date")]
    assert grid_size(keys, classifications) == 3 * 2 * 10
    assert grid_size([("persons", "income_band")], classifications) == 20
    assert grid_size([], classifications) == 1
    # values seen in the data are not a declared domain: no size, the output goes to review
    assert grid_size([("persons", "sex"), ("loose", "county")], classifications) is None
    assert grid_size([("persons", "pid")], classifications) is None
    with pytest.raises(KeyError, match="dataset 'nobody'"):
        grid_size([("nobody", "county")], classifications)
    with pytest.raises(KeyError, match="column 'town'"):
        domain_of(("persons", "town"), classifications)


def test_the_grid_lists_every_combination_in_product_order(classifications):
    table = grid([("persons", "sex"), ("firms", "county")], classifications)
    assert table.column_names == ["sex", "county"]
    assert table.to_pylist() == [
        {"sex": "男", "county": "任城区"},
        {"sex": "男", "county": "兖州区"},
        {"sex": "女", "county": "任城区"},
        {"sex": "女", "county": "兖州区"},
    ]
    three = grid(
        [("persons", "county"), ("persons", "age"), ("persons", "sex")],
        classifications,
        names=["c", "a", "s"],
    )
    assert three.num_rows == 3 * 3 * 2
    rows = [tuple(r.values()) for r in three.to_pylist()]
    assert len(set(rows)) == 18 and rows[:3] == [
        ("任城区", 0, "男"),
        ("任城区", 0, "女"),
        ("任城区", 18, "男"),
    ]
    assert three.schema.field("a").type == pa.int64()
    years = grid([("persons", "birth_date")], classifications)
    assert years.column("birth_date").to_pylist() == list(range(1990, 2000))
    assert grid([], classifications).num_rows == 0


def test_the_grid_is_refused_before_it_is_built(classifications):
    with pytest.raises(ClassificationError, match="has 60 cells .* more than the limit of 59"):
        grid(
            [("persons", "county"), ("persons", "sex"), ("persons", "birth_date")],
            classifications,
            limit=59,
        )
    with pytest.raises(ClassificationError, match="'loose.county' has no declared domain"):
        grid([("persons", "sex"), ("loose", "county")], classifications)
    with pytest.raises(ValueError, match="one name"):
        grid([("persons", "sex")], classifications, names=["a", "b"])


def test_a_job_is_a_person_job_unless_every_dataset_is_an_organisation(classifications):
    persons, firms, loose = (classifications[k] for k in ("persons", "firms", "loose"))
    assert loose.entity_kind is None  # undeclared
    assert is_person_job([persons]) and is_person_job([firms, persons])
    assert is_person_job([loose]) and is_person_job([firms, loose])  # undeclared is a person
    assert not is_person_job([firms]) and not is_person_job([firms, firms])
    assert is_person_job([])  # nothing shown to be an organisation


def test_canonical_text_of_codes_and_values():
    assert [canonical(v) for v in (True, False, 12, 12.0, 1.5, "任城区")] == [
        "true",
        "false",
        "12",
        "12",
        "1.5",
        "任城区",
    ]
    assert canonical(dt.date(2025, 1, 1)) == "2025-01-01"
    assert canonical(dt.datetime(2025, 1, 1, 8)) == "2025-01-01 08:00:00"


def test_values_outside_each_kind_of_domain():
    codes = Codes(("a", "b"))
    assert values_outside(pa.array(["a", None, "b", "a"]), codes) == (0, [])  # nulls are missing
    assert values_outside(pa.array(["d", "a", "c", "e", "f"]), codes) == (4, ["c", "d", "e"])
    numbers = Codes((1, 2))
    assert values_outside(pa.array([1.0, 2.0, 2.5]), numbers) == (1, [2.5])
    assert values_outside(pa.array([True, False]), Codes((False, True))) == (0, [])
    months = Codes(("2025-01-01", "2025-02-01"))
    days = pa.array([dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 2, 2)])
    assert values_outside(days, months) == (1, [dt.date(2025, 2, 2)])
    years = Range(2024, 2025)
    assert values_outside(days, years) == (0, [])
    assert values_outside(pa.array([2023, 2024]), years) == (1, [2023])
    assert values_outside(pa.array(["2024", "twenty"]), years) == (1, ["twenty"])
    bands = Bands((0, 10, 20))
    assert values_outside(pa.array([0, 19, 20, -1]), bands) == (2, [-1, 20])  # [0, 20)
    assert values_outside(pa.array([0.5, float("nan")]), bands)[0] == 1
    assert values_outside(pa.array(["5"]), bands)[0] == 1  # bands hold numbers


def test_check_values_names_the_column_and_hides_quasi_values(classifications):
    persons = classifications["persons"]
    ok = pa.table(
        {
            "pid": ["1", "2"],
            "sex": ["男", "女"],
            "county": ["任城区", None],
            "birth_date": [dt.date(1990, 5, 1), dt.date(1999, 12, 31)],
            "income": [1, 2],
        }
    )
    check_values(ok, persons)
    check_values(ok.to_batches()[0], persons)
    bad = ok.set_column(2, "county", pa.array(["济南", "兖州区"]))
    with pytest.raises(
        ClassificationError,
        match=r"column 'county': 1 value\(s\) .* outside its declared codes \('济南'\)",
    ):
        check_values(bad, persons)
    old = ok.set_column(3, "birth_date", pa.array([dt.date(1989, 1, 1), dt.date(1990, 1, 1)]))
    with pytest.raises(ClassificationError) as err:
        check_values(old, persons)
    assert "column 'birth_date': 1 value(s)" in str(err.value) and "1989" not in str(err.value)
    check_values(pa.table({"k": ["x"], "county": ["anything"]}), classifications["loose"])


def test_the_demo_declares_the_domains_its_data_has():
    tables = demo_tables(persons=2000, seed=7)
    for name, table in tables.items():
        classification = DEMO_TABLES[name].classification()
        assert classification.entity_kind in ("person", "organisation"), name
        check_values(table, classification)
    persons = DEMO_TABLES["persons"].classification()
    firms = DEMO_TABLES["enterprises"].classification()
    counties = Codes(tuple(name for _, name, _ in COUNTIES))
    assert persons.domains["county"] == counties == firms.domains["county"]
    assert firms.domains["industry"] == Codes(tuple(name for name, _ in INDUSTRIES))
    reached = [DEMO_TABLES[n].classification() for n in DEMO_TABLES]
    assert is_person_job(reached)
    assert grid_size([("persons", "county"), ("persons", "sex")], {"persons": persons}) == 22


def test_domains_are_capped():
    assert MAX_DOMAIN_VALUES == 5000
    too_many = {**UNDECLARED, "domains": {"county": {"codes": list(range(MAX_DOMAIN_VALUES + 1))}}}
    with pytest.raises(ClassificationError, match="5001 codes, more than 5000"):
        Classification.from_dict(too_many)
    years = {**UNDECLARED, "domains": {"county": {"range": {"from": 0, "to": MAX_DOMAIN_VALUES}}}}
    with pytest.raises(ClassificationError, match="range of 5001 values"):
        Classification.from_dict(years)
