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
from policies.errors import ClassificationError

ROOT = Path(__file__).resolve().parents[1]
DEMO = sorted((ROOT / "sandbox" / "demo" / "classifications").glob("*.yaml"))
BASE = {"entity_key": "pid", "columns": {"pid": "identifier", "income": "measure"}}


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
    ],
)
def test_each_problem_is_a_classification_error_naming_it(data, message):
    with pytest.raises(ClassificationError) as err:
        Classification.from_dict(data)
    assert message in str(err.value)
    assert err.value.code == "bad_classification"


def test_an_unknown_key_is_named_before_problems_of_the_known_ones():
    with pytest.raises(ClassificationError, match="unknown key 'entity'"):
        Classification.from_dict({"entity": "pid", "columns": {"pid": "nonsense"}})
