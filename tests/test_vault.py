"""The vault: registering dataset versions from real files into a real platform home (Art. 14).

Every refusal is checked three ways: the message says what is wrong (never a
data value), no dataset or version row was written, and no file was left behind
(no new snapshot under ``vault/``, nothing in ``tmp/``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import func, select

from policies.classes import Classification, ColumnClass
from policies.errors import (
    ClassificationError,
    Conflict,
    InputError,
    NotFound,
    PermissionDenied,
    SourceError,
)
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import Role
from sandbox.core.store import dataset_versions, datasets
from sandbox.data import vault


def vault_files(platform) -> set[Path]:
    return {p for p in (platform.home / "vault").rglob("*") if p.is_file()}


def table_counts(platform) -> tuple[int, int]:
    with platform.store.read() as conn:
        return (
            conn.execute(select(func.count()).select_from(datasets)).scalar_one(),
            conn.execute(select(func.count()).select_from(dataset_versions)).scalar_one(),
        )


class Unchanged:
    """Asserts that a refused registration left the store and the home as they were."""

    def __init__(self, platform):
        self.platform = platform
        self.files = vault_files(platform)
        self.counts = table_counts(platform)
        with platform.store.read() as conn:
            self.entries = ledger.count(conn)

    def check(self) -> None:
        assert table_counts(self.platform) == self.counts, "half-registered dataset rows"
        assert vault_files(self.platform) == self.files, "stray snapshot in the vault"
        assert list((self.platform.home / "tmp").iterdir()) == [], "work folder left in tmp/"
        with self.platform.store.read() as conn:
            assert ledger.count(conn) == self.entries, "a refused registration was ledgered"


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def pums_rows(pums_csv: Path) -> list[list[str]]:
    with open(pums_csv, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


# -- registering and versions ------------------------------------------------------------------


def test_register_makes_version_one_with_a_snapshot_and_profile(
    platform, provider, pums_csv, pums_classification
):
    result = vault.register(platform, provider, "pums", str(pums_csv), pums_classification)
    version = result.version
    assert result.changed is True
    assert (version.dataset, version.version, version.rows) == ("pums", 1, 1000)
    assert version.provider_id == provider.id
    assert version.path.is_file()
    assert version.path.is_relative_to(platform.home / "vault")
    assert version.path.name == f"{version.sha256}.parquet"
    assert hashlib.sha256(version.path.read_bytes()).hexdigest() == version.sha256
    assert version.bytes == version.path.stat().st_size
    snapshot = pq.read_table(version.path)
    assert snapshot.num_rows == 1000
    assert snapshot.column_names == ["age", "sex", "educ", "race", "income", "married", "pid"]
    assert version.profile["rows"] == 1000
    assert version.profile["columns"]["income"]["class"] == "measure"
    assert version.profile["duplicate_entity_keys"]["distinct_keys"] == 1000
    assert version.classification.class_of("pid") is ColumnClass.IDENTIFIER
    assert list((platform.home / "tmp").iterdir()) == []
    with platform.store.read() as conn:
        [entry] = ledger.query(conn, action="dataset.register")
        assert vault.get_version(conn, platform, "pums") == version
    assert (entry["actor"], entry["role"], entry["subject"]) == (
        "stats_bureau",
        "provider",
        "dataset:pums",
    )
    assert entry["article"] == "Art. 14"
    assert entry["details"]["sha256"] == version.sha256


def test_progress_is_reported(platform, provider, pums_csv, pums_classification):
    seen = []
    vault.register(
        platform,
        provider,
        "pums",
        str(pums_csv),
        pums_classification,
        progress=lambda rows, done, total: seen.append((rows, done, total)),
    )
    assert seen and seen[-1][0] == 1000
    assert seen[-1][2] == pums_csv.stat().st_size


def test_reregistering_the_same_data_keeps_version_one(
    platform, provider, pums_csv, pums_classification, pums_dataset
):
    again = vault.register(platform, provider, "pums", str(pums_csv), pums_classification)
    assert again.changed is False
    assert again.version.version == 1
    assert again.version.sha256 == pums_dataset.sha256
    assert table_counts(platform) == (1, 1)
    with platform.store.read() as conn:
        assert len(ledger.query(conn, action="dataset.reregister_unchanged")) == 1


def test_changed_data_makes_version_two_and_keeps_version_one(
    platform, provider, pums_csv, pums_classification, pums_dataset, tmp_path
):
    fewer = write_csv(tmp_path / "pums_999.csv", pums_rows(pums_csv)[:-1])
    result = vault.register(platform, provider, "pums", str(fewer), pums_classification)
    assert result.changed is True
    assert result.version.version == 2
    assert result.version.rows == 999
    assert result.version.sha256 != pums_dataset.sha256
    assert pq.read_table(pums_dataset.path).num_rows == 1000  # version 1 is still readable
    with platform.store.read() as conn:
        assert vault.get_version(conn, platform, "pums", 1) == pums_dataset
        assert vault.get_version(conn, platform, "pums").version == 2
        [listed] = vault.list_datasets(conn)
        with pytest.raises(NotFound, match="has no version 3"):
            vault.get_version(conn, platform, "pums", 3)
    assert (listed["name"], listed["version"], listed["rows"]) == ("pums", 2, 999)
    assert table_counts(platform) == (1, 2)


def test_changed_classification_of_the_same_data_makes_a_new_version(
    platform, provider, pums_csv, pums_dataset, pums_classification
):
    base = pums_classification.to_dict()
    columns = {**base["columns"], "age": "measure"}
    changed = Classification.from_dict({**base, "columns": columns})
    result = vault.register(platform, provider, "pums", str(pums_csv), changed)
    assert result.changed is True
    assert result.version.version == 2
    assert result.version.sha256 == pums_dataset.sha256
    assert result.version.path == pums_dataset.path  # content-addressed: one file, two versions
    assert result.version.classification.class_of("age") is ColumnClass.MEASURE
    assert len(vault_files(platform)) == 1


def test_two_datasets_with_the_same_content_share_one_snapshot(
    platform, provider, pums_csv, pums_classification, pums_dataset
):
    other = vault.register(platform, provider, "pums_copy", str(pums_csv), pums_classification)
    assert other.version.path == pums_dataset.path
    assert table_counts(platform) == (2, 2)


def test_register_from_parquet(platform, provider, pums_csv, pums_classification, tmp_path):
    path = tmp_path / "pums.parquet"
    pq.write_table(pacsv.read_csv(pums_csv), path)
    result = vault.register(platform, provider, "pums_pq", str(path), pums_classification)
    assert result.version.rows == 1000
    assert result.version.profile["rows"] == 1000
    assert pq.read_table(result.version.path).equals(pq.read_table(path))


def test_register_from_json_lines(platform, provider, pums_csv, pums_classification, tmp_path):
    path = tmp_path / "pums.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for record in pacsv.read_csv(pums_csv).to_pylist():
            fh.write(json.dumps(record) + "\n")
    result = vault.register(platform, provider, "pums_jl", str(path), pums_classification)
    assert result.version.rows == 1000
    assert result.version.profile["rows"] == 1000
    snapshot = pq.read_table(result.version.path)
    assert sorted(snapshot.column("pid").to_pylist()) == list(range(1, 1001))


def test_snapshot_compression_follows_the_setting(
    platform, provider, pums_csv, pums_classification
):
    (platform.home / "sandbox.toml").write_text('[ingest]\ncompression = "snappy"\n')
    reopened = Platform.open(platform.home)
    try:
        result = vault.register(reopened, provider, "pums", str(pums_csv), pums_classification)
    finally:
        reopened.close()
    meta = pq.read_metadata(result.version.path)
    assert meta.row_group(0).column(0).compression == "SNAPPY"


# -- refusals: a clear message, nothing half-registered, no stray file ---------------------------


def test_missing_file(platform, provider, pums_classification, tmp_path):
    unchanged = Unchanged(platform)
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(SourceError, match=r"nowhere\.csv: does not exist"):
        vault.register(platform, provider, "pums", str(missing), pums_classification)
    unchanged.check()


def test_csv_line_with_wrong_field_count_names_the_line(
    platform, provider, pums_csv, pums_classification, tmp_path
):
    rows = pums_rows(pums_csv)[:6]
    rows[3] = rows[3] + ["99999"]  # the file's 4th line: header, 2 good rows, then this
    bad = write_csv(tmp_path / "bad.csv", rows)
    unchanged = Unchanged(platform)
    with pytest.raises(SourceError) as err:
        vault.register(platform, provider, "pums", str(bad), pums_classification)
    assert "line 4" in str(err.value)
    assert "expected 7 columns, got 8" in str(err.value)
    assert "99999" not in str(err.value)
    unchanged.check()


def test_bad_line_after_the_first_block_leaves_no_partial_snapshot(
    platform, provider, pums_csv, pums_classification, tmp_path
):
    """The first 1 MiB is already written to the work folder when the bad line is met."""
    header, *body = pums_rows(pums_csv)
    rows = [header] + [[*r[:-1], str(i)] for i, r in enumerate(body * 60, start=1)]
    rows.append(["30", "1", "9", "1", "12X", "1", "60001"])  # 'income' is a float column
    bad = write_csv(tmp_path / "long.csv", rows)
    assert bad.stat().st_size > 1 << 20
    unchanged = Unchanged(platform)
    with pytest.raises(SourceError) as err:
        vault.register(platform, provider, "pums", str(bad), pums_classification)
    message = str(err.value)
    assert "line 60002" in message
    assert "column 'income'" in message
    assert "12X" not in message
    unchanged.check()


def test_classification_naming_a_column_the_data_lacks(
    platform, provider, pums_csv, pums_classification
):
    base = pums_classification.to_dict()
    columns = {**base["columns"], "county": "dimension"}
    wrong = Classification.from_dict({**base, "columns": columns})
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError, match="column 'county' is classified but missing"):
        vault.register(platform, provider, "pums", str(pums_csv), wrong)
    unchanged.check()


def test_unclassified_column_is_refused(platform, provider, pums_csv, pums_classification):
    base = pums_classification.to_dict()
    columns = {k: v for k, v in base["columns"].items() if k != "income"}
    wrong = Classification.from_dict({**base, "columns": columns})
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError) as err:
        vault.register(platform, provider, "pums", str(pums_csv), wrong)
    assert "column 'income' of the data is not classified" in str(err.value)
    assert err.value.article == "Art. 15"
    unchanged.check()


def test_an_id_format_on_a_number_column_is_refused(
    platform, provider, pums_csv, pums_classification
):
    # pid is read as a number: declaring it a resident ID must not pass silently.
    base = pums_classification.to_dict()
    wrong = Classification.from_dict({**base, "formats": {"pid": "cn_resident_id"}})
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError) as err:
        vault.register(platform, provider, "pums", str(pums_csv), wrong)
    assert "column 'pid' is declared cn_resident_id but the source yields" in str(err.value)
    assert "?text=pid" in str(err.value)
    unchanged.check()


def write_classification(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_unknown_class_in_the_classification_file(platform, tmp_path, pums_classification):
    base = pums_classification.to_dict()
    columns = {**base["columns"], "income": "mesure"}
    path = write_classification(tmp_path / "c.yaml", {**base, "columns": columns})
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError) as err:
        vault.load_classification(path)
    assert "column 'income': unknown class 'mesure'" in str(err.value)
    assert "did you mean 'measure'" in str(err.value)
    unchanged.check()


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ({"pid": "cn_resident"}, "unknown format 'cn_resident'; did you mean 'cn_resident_id'"),
        (
            {"person": "cn_resident_id"},
            "format declared for column 'person', which is not classified",
        ),
    ],
)
def test_wrong_format_declaration_in_the_classification_file(
    platform, tmp_path, formats, expected, pums_classification
):
    base = pums_classification.to_dict()
    path = write_classification(tmp_path / "c.yaml", {**base, "formats": formats})
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError, match=expected):
        vault.load_classification(path)
    unchanged.check()


def test_wrong_format_in_a_classification_built_in_code(
    platform, provider, pums_csv, pums_classification
):
    """A Classification made directly (not through from_dict) is validated by register too."""
    base = pums_classification.to_dict()
    wrong = Classification(
        columns={k: ColumnClass(v) for k, v in base["columns"].items()},
        entity_key="pid",
        formats={"pid": "passport"},
    )
    unchanged = Unchanged(platform)
    with pytest.raises(ClassificationError, match="unknown format 'passport'"):
        vault.register(platform, provider, "pums", str(pums_csv), wrong)
    unchanged.check()


def test_classification_file_that_is_not_yaml_or_missing(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns: [unclosed\n", encoding="utf-8")
    with pytest.raises(ClassificationError, match="not valid YAML"):
        vault.load_classification(broken)
    with pytest.raises(ClassificationError, match="not found"):
        vault.load_classification(tmp_path / "absent.yaml")


def test_loaded_classification_file_registers(
    platform, provider, pums_csv, tmp_path, pums_classification
):
    base = pums_classification.to_dict()
    path = write_classification(tmp_path / "c.yaml", base)
    result = vault.register(
        platform, provider, "pums", str(pums_csv), vault.load_classification(path)
    )
    assert result.version.version == 1


def test_dataset_name_of_another_provider_is_a_conflict(
    platform, make_principal, pums_csv, pums_classification, pums_dataset
):
    rival, _ = make_principal("rival_bureau", Role.PROVIDER)
    unchanged = Unchanged(platform)
    with pytest.raises(Conflict, match="dataset 'pums' belongs to another provider"):
        vault.register(platform, rival, "pums", str(pums_csv), pums_classification)
    unchanged.check()
    with platform.store.read() as conn:
        assert vault.get_version(conn, platform, "pums") == pums_dataset


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR])
def test_only_a_provider_may_register(
    platform, make_principal, pums_csv, pums_classification, role
):
    jurisdiction = "city" if role is Role.AUTHORITY else None
    someone, _ = make_principal("someone", role, jurisdiction=jurisdiction)
    unchanged = Unchanged(platform)
    with pytest.raises(PermissionDenied) as err:
        vault.register(platform, someone, "pums", str(pums_csv), pums_classification)
    assert f"someone is an {role.value}" in str(err.value)  # operator, authority, auditor
    assert "only a provider may register datasets" in str(err.value)
    assert err.value.article == "Art. 14"
    unchanged.check()


@pytest.mark.parametrize("name", ["", "1pums", "pums-2024", "pums 2024", "pümps", "_pums", "a.b"])
def test_bad_dataset_name(platform, provider, pums_csv, pums_classification, name):
    unchanged = Unchanged(platform)
    with pytest.raises(InputError, match=r"dataset name .*letters, digits and '_'"):
        vault.register(platform, provider, name, str(pums_csv), pums_classification)
    unchanged.check()


def test_unknown_dataset_suggests_a_name(platform, pums_dataset):
    with platform.store.read() as conn, pytest.raises(NotFound, match="did you mean 'pums'"):
        vault.get_version(conn, platform, "pum")


def test_snapshot_is_arrow_readable_with_the_source_schema(pums_dataset):
    schema = pq.read_schema(pums_dataset.path)
    assert schema.field("pid").type == pa.int64()
    assert schema.field("income").type == pa.float64()


def test_read_ahead_keeps_the_order_and_stops_with_its_consumer():
    """Ingestion reads the source on a thread a few batches ahead of the writer."""
    produced: list[int] = []

    def source():
        for i in range(1000):
            produced.append(i)
            yield pa.record_batch([pa.array([i])], names=["x"])

    ahead = vault._read_ahead(source(), depth=2)
    first = [next(ahead).column(0)[0].as_py() for _ in range(3)]
    ahead.close()  # the consumer stops early (a full disk, say)
    assert first == [0, 1, 2]
    assert len(produced) <= 7, "the reader went on after the writer stopped"
    assert [b.column(0)[0].as_py() for b in vault._read_ahead(source())][-1] == 999


def test_read_ahead_raises_the_source_error_itself():
    def source():
        yield pa.record_batch([pa.array([1])], names=["x"])
        raise SourceError("line 7 of the CSV has 3 fields, expected 2")

    seen = []
    with pytest.raises(SourceError, match="line 7"):
        for batch in vault._read_ahead(source()):
            seen.append(batch.num_rows)
    assert seen == [1]
