"""The classification file as a pydantic model: its errors, and its JSON Schema for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
import yaml

from policies.classes import (
    FORMATS,
    SCHEMA_PATH,
    Classification,
    ColumnClass,
    FormatName,
    json_schema,
)
from policies.domains import Bands, Codes
from policies.errors import ClassificationError

ROOT = Path(__file__).resolve().parents[1]
DEMO = sorted((ROOT / "sandbox" / "demo" / "classifications").glob("*.yaml"))
BASE = {"entity_key": "pid", "columns": {"pid": "identifier", "income": "measure"}}
DECLARED = {
    "entity_key": "pid",
    "columns": {
        "pid": "identifier",
        "county": "dimension",
        "band": "dimension",
        "born": "quasi",
        "income": "measure",
        "fee": "measure",
    },
}


def test_the_committed_schema_is_the_generated_one():
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    generated = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    assert committed == generated, (
        "policies/classification.schema.json is stale; regenerate it with "
        "python -c 'from policies.classes import write_json_schema; write_json_schema()'"
    )


def test_the_schema_knows_every_class_and_format():
    schema = json_schema()
    assert schema["$defs"]["ColumnClass"]["enum"] == [c.value for c in ColumnClass]
    assert set(get_args(FormatName)) == set(FORMATS)
    assert schema["required"] == ["entity_key", "columns"]
    assert schema["additionalProperties"] is False


def test_the_demo_files_fit_the_schema_and_a_misspelt_one_does_not():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    assert DEMO
    for path in DEMO:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(data)), path.name
        Classification.from_dict(data)
    assert list(validator.iter_errors({**BASE, "columns": {"pid": "identifer"}}))
    assert list(validator.iter_errors({**BASE, "colums": {}}))


def test_a_valid_file_round_trips_with_classes_read_loosely():
    parsed = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": " Identifier", 2020: "MEASURE"},
            "formats": {"pid": "cn_resident_id"},
        }
    )
    assert parsed.columns == {"pid": ColumnClass.IDENTIFIER, "2020": ColumnClass.MEASURE}
    assert parsed.formats == {"pid": "cn_resident_id"}
    assert Classification.from_dict(parsed.to_dict()) == parsed
    assert Classification.from_dict({**BASE, "formats": None}).formats == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "must be a mapping with 'columns' and 'entity_key'"),
        (["pid"], "must be a mapping"),
        (
            {**BASE, "colums": {}},
            "unknown key 'colums' in the classification; did you mean 'columns'",
        ),
        ({"entity_key": "pid"}, "needs 'columns': a mapping of column name to class"),
        ({**BASE, "columns": {}}, "needs 'columns'"),
        ({**BASE, "columns": ["pid"]}, "needs 'columns'"),
        (
            {**BASE, "columns": {"pid": "identifier", "income": "mesure"}},
            "column 'income': unknown class 'mesure'; did you mean 'measure'",
        ),
        ({"columns": BASE["columns"]}, "needs 'entity_key'"),
        ({**BASE, "entity_key": ""}, "needs 'entity_key'"),
        ({**BASE, "entity_key": ["pid"]}, "entity_key must be the name of a column"),
        ({**BASE, "entity_key": "pids"}, "entity_key 'pids' is not among the classified columns"),
        (
            {**BASE, "formats": {"pid": "cn_resident"}},
            "column 'pid': unknown format 'cn_resident'; did you mean 'cn_resident_id'",
        ),
        (
            {**BASE, "formats": {"person": "cn_resident_id"}},
            "format declared for column 'person', which is not classified",
        ),
        ({**BASE, "formats": ["pid"]}, "'formats', if given, must be a mapping"),
        (
            {**BASE, "entity_kind": "company"},
            "entity_kind must be 'person' or 'organisation', not 'company'",
        ),
        (
            {**BASE, "membership": "public"},
            "membership must be 'sensitive' or 'non_sensitive', not 'public'",
        ),
        ({**BASE, "domains": ["county"]}, "'domains', if given, must be a mapping"),
        (
            {**DECLARED, "domains": {"cunty": {"codes": ["a"]}}},
            "domains, column 'cunty': the column is not classified; did you mean 'county'",
        ),
        (
            {**DECLARED, "domains": {"pid": {"codes": ["a"]}}},
            "domains, column 'pid': the column is classified 'identifier'; a domain is declared "
            "only for dimension, quasi or public columns",
        ),
        (
            {**DECLARED, "domains": {"income": {"range": {"from": 0, "to": 9}}}},
            "domains, column 'income': the column is classified 'measure'",
        ),
        ({**DECLARED, "domains": {"county": ["a"]}}, "domains, column 'county': a domain is a"),
        (
            {**DECLARED, "domains": {"county": {}}},
            "domains, column 'county': a domain has exactly one of 'codes', 'bands', 'range'",
        ),
        (
            {**DECLARED, "domains": {"county": {"codes": ["a"], "range": {"from": 1, "to": 2}}}},
            "exactly one of 'codes', 'bands', 'range', not codes and range",
        ),
        (
            {**DECLARED, "domains": {"county": {"kodes": ["a"]}}},
            "domains, column 'county': unknown key 'kodes'; did you mean 'codes'",
        ),
        (
            {**DECLARED, "domains": {"county": {"codes": []}}},
            "column 'county': the code list is empty",
        ),
        (
            {**DECLARED, "domains": {"county": {"codes": ["a", "b", "a"]}}},
            "domains, column 'county': code 'a' is listed twice",
        ),
        ({**DECLARED, "domains": {"county": {"codes": [1, 1.0]}}}, "code '1' is listed twice"),
        (
            {**DECLARED, "domains": {"county": {"codes": [1, "a"]}}},
            "domains, column 'county': the codes mix numbers and text",
        ),
        (
            {**DECLARED, "domains": {"county": {"codes": [None]}}},
            "domains, column 'county': code None is not text, a number or a boolean",
        ),
        (
            {**DECLARED, "domains": {"county": {"codes": "a"}}},
            "domains, column 'county': 'codes' must be a list",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"from": 0, "to": 100, "width": 0}}}},
            "domains, column 'band': bands need a positive width, not 0",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"from": 0, "to": 105, "width": 10}}}},
            "domains, column 'band': bands: 'to' - 'from' must be a multiple of the width 10",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"from": 0, "to": 100}}}},
            "domains, column 'band': bands need 'from', 'to' and 'width' (or 'edges'); 'width'",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"from": 9, "to": 0, "width": 1}}}},
            "bands need 'to' above 'from'",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"edges": [0, 10, 5]}}}},
            "domains, column 'band': bands need at least two edges, each above the one before",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"edges": [0, 10], "width": 10}}}},
            "bands take either 'edges' or 'from', 'to' and 'width', not both",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"from": "0", "to": 9, "width": 1}}}},
            "domains, column 'band': 'bands.from' must be an integer, not '0'",
        ),
        (
            {**DECLARED, "domains": {"band": {"bands": {"form": 0, "to": 9, "width": 1}}}},
            "domains, column 'band': unknown key 'form'; did you mean 'from'",
        ),
        (
            {**DECLARED, "domains": {"born": {"range": {"from": 2025, "to": 2015}}}},
            "domains, column 'born': range: 'to' (2015) is before 'from' (2025)",
        ),
        (
            {**DECLARED, "domains": {"born": {"range": {"from": 2015}}}},
            "domains, column 'born': 'range.to' is missing",
        ),
        (
            {**DECLARED, "derived": {"x": "income *"}},
            "derived measure 'x': 'income *' is not an expression",
        ),
        (
            {**DECLARED, "derived": {"x": "county * 2"}},
            "derived measure 'x': column 'county' is classified 'dimension', not a measure",
        ),
        (
            {**DECLARED, "derived": {"x": "incom * 2"}},
            "derived measure 'x': 'incom' is not a column of the dataset; did you mean 'income'",
        ),
        (
            {**DECLARED, "derived": {"x": "abs(income)"}},
            "derived measure 'x': 'ABS(income)' is not",
        ),
        (
            {**DECLARED, "derived": {"x": "CASE WHEN income > 0 THEN income ELSE 0 END"}},
            "is not allowed; only measure columns, numbers and + - * /",
        ),
        ({**DECLARED, "derived": {"x": "income // 2"}}, "is not allowed"),
        ({**DECLARED, "derived": {"x": "income; DROP TABLE t"}}, "is not allowed"),
        ({**DECLARED, "derived": {"x": "12"}}, "derived measure 'x': '12' uses no measure column"),
        ({**DECLARED, "derived": {"Income": "fee"}}, "derived measure 'Income' has the name of a"),
        ({**DECLARED, "derived": {"x y": "fee"}}, "derived measure 'x y': use letters, digits"),
        ({**DECLARED, "derived": {"x": 12}}, "derived measure 'x' must be an expression as text"),
        ({**DECLARED, "derived": ["x"]}, "'derived', if given, must be a mapping"),
    ],
)
def test_each_problem_is_a_classification_error_naming_it(data, message):
    with pytest.raises(ClassificationError) as err:
        Classification.from_dict(data)
    assert message in str(err.value)
    assert err.value.code == "bad_classification"


def test_the_declarations_round_trip_and_an_old_file_keeps_its_dict():
    data = {
        **DECLARED,
        "entity_kind": " Organisation",
        "membership": "non_sensitive",
        "domains": {
            "county": {"codes": ["a", "b"]},
            "band": {"bands": {"from": 0, "to": 100, "width": 10}},
            "born": {"range": {"from": 1926, "to": 2025}},
        },
        "derived": {"annual": " income * 12 + fee ", "net": "(income - fee) / 2"},
    }
    parsed = Classification.from_dict(data)
    assert parsed.entity_kind == "organisation" and parsed.membership == "non_sensitive"
    assert parsed.derived == {"annual": "income * 12 + fee", "net": "(income - fee) / 2"}
    assert Classification.from_dict(parsed.to_dict()) == parsed
    assert parsed.to_dict()["domains"]["band"] == {"bands": {"from": 0, "to": 100, "width": 10}}
    edges = {**DECLARED, "domains": {"band": {"bands": {"edges": [0, 18, 65]}}}}
    assert Classification.from_dict(Classification.from_dict(edges).to_dict()).domains == {
        "band": Bands((0, 18, 65))
    }
    # without the new keys: undeclared kind (treated as person), sensitive membership, and
    # the same dict as before, so a dataset version's identity does not change
    old = Classification.from_dict(BASE)
    assert old.entity_kind is None and old.membership == "sensitive"
    assert old.domains == {} and old.derived == {}
    assert set(old.to_dict()) == {"entity_key", "columns", "formats"}
    loose = {**DECLARED, "domains": None, "derived": None, "entity_kind": None}
    assert Classification.from_dict(loose) == Classification.from_dict(DECLARED)


def test_yaml_dates_and_booleans_are_codes():
    text = """
entity_key: pid
columns: {pid: identifier, month: dimension, late: dimension}
domains:
  month: {codes: [2025-01-01, 2025-02-01]}
  late: {codes: [false, true]}
"""
    parsed = Classification.from_dict(yaml.safe_load(text))
    assert parsed.domains["month"] == Codes(("2025-01-01", "2025-02-01"))
    assert parsed.domains["late"] == Codes((False, True))


def test_the_schema_declares_the_new_keys():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {
        **DECLARED,
        "entity_kind": "person",
        "domains": {"county": {"codes": ["a"]}, "band": {"bands": {"edges": [0, 1]}}},
        "derived": {"x": "income * 2"},
    }
    assert not list(validator.iter_errors(good))
    for bad in (
        {**DECLARED, "entity_kind": "company"},
        {**DECLARED, "membership": "public"},
        {**DECLARED, "domains": {"county": {"codes": ["a"], "range": {"from": 1, "to": 2}}}},
        {**DECLARED, "domains": {"county": {}}},
        {**DECLARED, "domains": {"band": {"bands": {"from": 0, "to": 9}}}},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_an_unknown_key_is_named_before_problems_of_the_known_ones():
    with pytest.raises(ClassificationError, match="unknown key 'entity'"):
        Classification.from_dict({"entity": "pid", "columns": {"pid": "nonsense"}})


def test_the_readme_example_of_the_declarations_is_a_valid_classification():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    examples = [yaml.safe_load(b) for b in blocks if "entity_key:" in b]
    assert examples
    for example in examples:
        parsed = Classification.from_dict(example)
        assert parsed.entity_kind and parsed.domains and parsed.derived
