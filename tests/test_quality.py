"""The quality profile against numbers counted by hand, over real Parquet files."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import validity
from connectors.quality import EXACT_DISTINCT_MAX_ROWS, format_profile, profile_parquet
from policies.classes import Classification
from policies.errors import ClassificationError, SourceError

V1 = validity.make_resident_id("370811", dt.date(1980, 1, 2), 11)
V2 = validity.make_resident_id("370811", dt.date(1990, 5, 6), 22)
V3 = validity.make_resident_id("370882", dt.date(1975, 12, 31), 303)
V4 = validity.make_resident_id("370829", dt.date(2001, 2, 28), 4)
BAD_CHECK = V4[:17] + ("0" if V4[17] != "0" else "1")
C1 = validity.make_credit_code("91370800MA3C4D5E6")
C2 = validity.make_credit_code("12370800MB1234567")
C1_BAD = C1[:17] + ("0" if C1[17] != "0" else "1")

CLASSIFICATION = Classification.from_dict(
    {
        "entity_key": "pid",
        "columns": {
            "pid": "identifier",
            "org": "identifier",
            "county": "dimension",
            "income": "measure",
        },
        "formats": {"pid": "cn_resident_id", "org": "cn_credit_code"},
    }
)


@pytest.fixture
def snapshot(tmp_path):
    table = pa.table(
        {
            "pid": [V1, V1, V2, V3, V3, V3, BAD_CHECK, "12345", None, V4],
            # C2 in lower case is valid after normalisation; C1 with a changed check is not.
            "org": [C1, C1, C2.lower(), C1_BAD, None, None, None, None, None, "NOTACODE"],
            "county": ["a", "a", "b", None, None, "c", "c", "c", "a", "b"],
            "income": [1.0, 2.0, 2.0, 3.0, 0.0, -5.0, 7.5, 7.5, 7.5, 10.0],
        }
    )
    path = tmp_path / "snapshot.parquet"
    pq.write_table(table, path)
    return str(path)


def test_profile_counts_by_hand(snapshot):
    profile = profile_parquet(snapshot, CLASSIFICATION)
    assert profile["rows"] == 10
    assert profile["distinct_method"] == "exact"
    pid = profile["columns"]["pid"]
    assert pid["class"] == "identifier"
    assert pid["nulls"] == 1 and pid["null_rate"] == pytest.approx(0.1)
    assert pid["distinct"] == 6  # V1, V2, V3, V4, BAD_CHECK, "12345"
    assert pid["format"] == "cn_resident_id"
    assert pid["valid"] == 7  # V1 x2, V2, V3 x3, V4
    assert pid["valid_share"] == pytest.approx(7 / 9)  # of the non-null values

    org = profile["columns"]["org"]
    assert org["nulls"] == 5 and org["distinct"] == 4
    assert org["valid"] == 3 and org["valid_share"] == pytest.approx(3 / 5)

    county = profile["columns"]["county"]
    assert county == {
        "class": "dimension",
        "type": "string",
        "nulls": 2,
        "null_rate": pytest.approx(0.2),
        "distinct": 3,
        "distinct_exact": True,
    }
    income = profile["columns"]["income"]
    assert income["class"] == "measure" and income["type"] == "double"
    assert income["nulls"] == 0 and income["distinct"] == 7

    assert profile["duplicate_entity_keys"] == {
        "column": "pid",
        "distinct_keys": 6,
        "repeated_keys": 2,  # V1 twice, V3 three times
        "rows_with_repeated_key": 5,
    }


def test_profile_holds_no_data_values(snapshot):
    text = repr(profile_parquet(snapshot, CLASSIFICATION))
    for value in (V1, V2, V3, V4, C1, "12345", "NOTACODE"):
        assert value not in text


def test_format_profile_table(snapshot):
    text = format_profile(profile_parquet(snapshot, CLASSIFICATION))
    lines = text.splitlines()
    assert lines[0] == "rows: 10  (distinct counts exact)"
    assert lines[1].split() == [
        "column",
        "class",
        "type",
        "null",
        "rate",
        "distinct",
        "valid",
        "format",
    ]
    pid_line = next(line for line in lines if line.startswith("pid "))
    assert pid_line.split() == [
        "pid",
        "identifier",
        "string",
        "10.0%",
        "6",
        "77.8%",
        "cn_resident_id",
    ]
    county_line = next(line for line in lines if line.startswith("county "))
    assert county_line.split() == ["county", "dimension", "string", "20.0%", "3"]
    assert lines[-1] == "entity key 'pid': 6 distinct, 2 on more than one row (5 rows)"


def test_monthly_payments_repeat_keys_without_error(tmp_path):
    months = 12
    people = 500
    table = pa.table(
        {
            "pid": np.repeat(np.arange(people), months),
            "month": np.tile(np.arange(1, months + 1), people),
            "amount": np.full(people * months, 300.0),
        }
    )
    path = tmp_path / "payments.parquet"
    pq.write_table(table, path)
    classification = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": "identifier", "month": "dimension", "amount": "measure"},
        }
    )
    dup = profile_parquet(str(path), classification)["duplicate_entity_keys"]
    assert dup == {
        "column": "pid",
        "distinct_keys": people,
        "repeated_keys": people,
        "rows_with_repeated_key": people * months,
    }


def test_large_snapshot_uses_approximate_distinct(tmp_path):
    n = EXACT_DISTINCT_MAX_ROWS + 200_000
    i = np.arange(n)
    table = pa.table({"pid": i // 2, "county": i % 17, "income": (i % 1000).astype(float)})
    path = tmp_path / "large.parquet"
    pq.write_table(table, path)
    classification = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": "identifier", "county": "dimension", "income": "measure"},
        }
    )
    profile = profile_parquet(str(path), classification)
    assert profile["rows"] == n
    assert profile["distinct_method"] == "approximate"
    income = profile["columns"]["income"]
    assert income["distinct"] == pytest.approx(1000, rel=0.05)
    assert income["distinct_exact"] is False
    # The entity key is counted exactly.
    assert profile["columns"]["pid"]["distinct"] == n // 2
    assert profile["columns"]["pid"]["distinct_exact"] is True
    text = format_profile(profile)
    assert "distinct counts marked ~ are approximate" in text
    assert f"~{income['distinct']:,}" in text
    assert profile["duplicate_entity_keys"]["distinct_keys"] == n // 2
    assert profile["duplicate_entity_keys"]["repeated_keys"] == n // 2


def test_profile_refuses_unclassified_columns_and_missing_files(tmp_path, snapshot):
    partial = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": "identifier", "org": "identifier", "county": "dimension"},
        }
    )
    with pytest.raises(ClassificationError, match="column 'income' of the data is not classified"):
        profile_parquet(snapshot, partial)
    missing = tmp_path / "gone.parquet"
    with pytest.raises(SourceError, match=f"{missing}: Parquet snapshot does not exist"):
        profile_parquet(str(missing), CLASSIFICATION)


def test_an_empty_snapshot_profiles_to_zeros(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table({"pid": pa.array([], pa.string()), "x": pa.array([], pa.int64())}), path
    )
    classification = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": "identifier", "x": "measure"},
            "formats": {"pid": "cn_resident_id"},
        }
    )
    profile = profile_parquet(str(path), classification)
    assert profile["rows"] == 0
    assert profile["duplicate_entity_keys"]["repeated_keys"] == 0
    assert profile["columns"]["pid"]["valid_share"] is None
