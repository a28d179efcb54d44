"""``dataset suggest``: a classification proposed from a real source's values, with its
evidence; it validates against the classification's schema, and registering with it
(the provider's confirmation) takes the dataset to a released job."""

from __future__ import annotations

import datetime as dt
import json
import random

import jsonschema
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from source_helpers import release_counts

from connectors.suggest import suggest, to_yaml
from connectors.validity import make_credit_code, make_resident_id
from policies.classes import SCHEMA_PATH, Classification
from policies.errors import PermissionDenied, SourceError
from sandbox.core import ledger
from sandbox.core.principals import Role
from sandbox.data.suggestion import suggest_classification
from sandbox.data.vault import list_datasets

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀兰霞平刚桂英华"
COUNTIES = ["任城区", "兖州区", "曲阜市"]


def people(n: int = 600, *, bad_ids: float = 0.0, seed: int = 7) -> pa.Table:
    rnd = random.Random(seed)
    births = [dt.date(1940, 1, 1) + dt.timedelta(days=rnd.randrange(25_000)) for _ in range(n)]
    pids = [make_resident_id("370811", b, i % 1000) for i, b in enumerate(births)]
    pids = [p[:17] + ("0" if p[17] != "0" else "1") if rnd.random() < bad_ids else p for p in pids]
    return pa.table(
        {
            "pid": pids,
            "姓名": [
                rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN) for _ in range(n)
            ],
            "mobile": [f"1{rnd.choice('3589')}{rnd.randrange(10**9):09d}" for _ in range(n)],
            "birth_date": births,
            "address": [
                f"山东省济宁市{rnd.choice(COUNTIES)}{rnd.randrange(900)}号" for _ in range(n)
            ],
            "county": [COUNTIES[i % 3] for i in range(n)],
            "sex": [1 + i % 2 for i in range(n)],
            "income": [round(rnd.lognormvariate(8, 1), 2) for _ in range(n)],
            "employer": [
                make_credit_code(f"91370800MA{rnd.randrange(10**7):07d}") for _ in range(n)
            ],
            "remark": [f"r{rnd.random():.8f}" for _ in range(n)],
        }
    )


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "people.parquet"
    pq.write_table(people(), path)
    return str(path)


def test_every_kind_of_column_is_proposed_with_its_evidence(source):
    result = suggest(source).to_dict()
    classification = result["classification"]
    assert classification["columns"] == {
        "pid": "identifier",
        "姓名": "identifier",
        "mobile": "identifier",
        "birth_date": "quasi",
        "address": "quasi",
        "county": "dimension",
        "sex": "dimension",
        "income": "measure",
        "employer": "identifier",
        "remark": "identifier",
    }
    assert classification["entity_key"] == "pid"
    assert classification["entity_kind"] == "person"
    assert classification["formats"] == {"pid": "cn_resident_id", "employer": "cn_credit_code"}
    assert classification["domains"]["county"] == {"codes": sorted(COUNTIES)}
    assert classification["domains"]["sex"] == {"codes": [1, 2]}
    assert classification["domains"]["birth_date"]["range"]["from"] == 1940
    low, high = classification["bounds"]["income"]
    assert low == 0 and 20_000 < high < 100_000
    evidence = result["evidence"]
    assert evidence["pid"]["share_valid"] == 1.0 and evidence["pid"]["distinct"] == 600
    assert evidence["county"]["distinct"] == 3 and evidence["mobile"]["share_valid"] == 1.0
    assert result["rows"] == 600 and result["complete"] is True


def test_the_suggestion_validates_against_the_classification_schema(source):
    result = suggest(source)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(result.classification(), schema)
    # The YAML the provider edits reads back to the same classification.
    assert yaml.safe_load(to_yaml(result)) == result.classification()
    Classification.from_dict(yaml.safe_load(to_yaml(result)))


def test_the_share_valid_decides_an_identifier_format(tmp_path):
    path = tmp_path / "ids.parquet"
    pq.write_table(people(300, bad_ids=0.05).select(["pid", "county"]), path)
    evidence = suggest(str(path)).to_dict()["evidence"]["pid"]
    assert evidence["class"] == "identifier" and 0.9 <= evidence["share_valid"] < 1.0
    pq.write_table(people(300, bad_ids=0.5).select(["pid", "county"]), path)
    result = suggest(str(path)).to_dict()
    assert "formats" not in result["classification"]
    assert result["evidence"]["pid"]["reason"].startswith("text with many distinct values")


def test_ids_read_as_numbers_get_no_format_and_a_hint(tmp_path):
    table = people(200).select(["pid", "county", "income"])
    digits = [p for p in table.column("pid").to_pylist() if p[-1] != "X"]
    path = tmp_path / "ids.csv"
    pacsv.write_csv(pa.table({"pid": digits, "county": table["county"][: len(digits)]}), path)
    result = suggest(str(path))
    pid = result.columns[0]
    assert pid.cls == "identifier" and pid.fmt is None and "?text=pid" in pid.reason


def test_only_the_first_rows_are_read_and_the_notes_say_so(source):
    result = suggest(source, rows=100)
    assert result.rows == 100 and result.complete is False
    assert any("first 100 rows" in note for note in result.notes)


def test_no_identifier_column_is_said_so(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("county,n\n" + "".join(f"c{i % 4},{i}\n" for i in range(40)))
    result = suggest(str(path))
    assert result.entity_key == "n" and any("no column looks like" in n for n in result.notes)
    Classification.from_dict(result.classification())


def test_nothing_is_registered_until_the_provider_confirms(
    platform, provider, make_principal, source, tmp_path
):
    out = suggest_classification(platform, provider, source, rows=1000)
    with platform.store.read() as conn:
        assert list_datasets(conn) == []
        entries = ledger.query(conn, action="dataset.suggest")
    assert len(entries) == 1 and entries[0]["details"]["rows"] == 600
    assert "任城区" not in json.dumps(entries[0]["details"], ensure_ascii=False)
    edited = yaml.safe_load(out["yaml"])  # the provider confirms the proposal as it is
    counts = release_counts(platform, provider, make_principal, "people", source, edited)
    assert counts == {county: 200 for county in COUNTIES}


def test_only_a_provider_profiles_a_source(platform, make_principal, source):
    operator = make_principal("bank", Role.OPERATOR)[0]
    with pytest.raises(PermissionDenied):
        suggest_classification(platform, operator, source)


def test_a_bad_source_is_a_source_error(platform, provider, tmp_path):
    with pytest.raises(SourceError) as err:
        suggest_classification(platform, provider, str(tmp_path / "none.csv"))
    assert "does not exist" in err.value.message


def test_a_key_on_several_rows_proposes_rows_per_entity(tmp_path):
    table = people(100).select(["pid", "county", "income"])
    monthly = pa.concat_tables([table] * 12 + [table.slice(0, 1)])  # one person 13 times
    path = tmp_path / "monthly.parquet"
    pq.write_table(monthly, path)
    result = suggest(str(path))
    assert result.entity_key == "pid" and result.classification()["rows_per_entity"] == 13
    assert result.columns[0].evidence["most_rows_of_one_key"] == 13
    assert any("rows_per_entity" in note for note in result.notes)
    once = tmp_path / "once.parquet"
    pq.write_table(table, once)
    assert "rows_per_entity" not in suggest(str(once)).classification()
