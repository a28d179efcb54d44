"""The setup's build (issue 23): the column normalised in Arrow equals the function item by
item; the setup built in processes and small tasks is byte for byte the library's own
message for the same items and key; the RAW merge by records equals the protobuf merge.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import private_set_intersection.python as psi_lib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.normalise import normalise, normalise_all
from jobs.psi_match import BundleKind, unpack_parts
from sandbox.psi import build
from sandbox.psi.build import merge_raw, plan_tasks, task_items
from sandbox.psi.column import distinct_items, distinct_items_by_group, normalised
from sandbox.psi.setup import SetupSpec, build_bundle, shards_of
from sandbox.psi.worker import merge_raw_messages
from tests.psi_helpers import firm_code

# Every character class the normal form treats apart: ASCII letters and digits, the ASCII
# spaces str.strip() removes (\x1c-\x1f among them), Unicode spaces (U+0085, U+00A0,
# U+2003, the ideographic space), full-width forms, other scripts, punctuation.
TRICKY = "aAxX09 \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u2003\u3000３ｘＸ！～ß中-."
ID_LIKE = st.tuples(
    st.text(" \t\x1f\u3000", max_size=2),
    st.text("0123456789abcxyzABCXYZ３ｘ", min_size=17, max_size=19),
    st.text(" \r\n\x0b\u3000", max_size=2),
).map("".join)
VALUES = st.one_of(st.none(), st.text(TRICKY, max_size=22), ID_LIKE)


def _old_distinct(values: list) -> list[str]:
    return normalise_all(values)


@settings(max_examples=150, deadline=None)
@given(st.lists(VALUES, max_size=40), st.booleans())
def test_the_column_normalised_in_arrow_equals_the_function(values, large):
    array = pa.array(values, pa.large_string() if large else pa.string())
    expected = [None if v is None else normalise(v) for v in values]
    assert normalised(array).to_pylist() == expected
    chunked = pa.chunked_array([array[:3], array[3:]], array.type)
    assert normalised(chunked).to_pylist() == expected


def test_integer_and_other_columns_are_spelled_as_str_spells_them():
    ints = pa.array([12, None, -7, 370811199001011234], pa.int64())
    assert normalised(ints).to_pylist() == ["12", None, "-7", "370811199001011234"]
    floats = pa.array([1.0, None, 2.5])
    assert normalised(floats).to_pylist() == ["1.0", None, "2.5"]
    assert normalised(pa.array([], pa.string())).to_pylist() == []


def test_distinct_items_are_the_old_loop_s_in_first_seen_order(tmp_path):
    codes = [firm_code(i % 700) for i in range(2000)]
    values = [c.lower() if i % 3 else f" {c} " for i, c in enumerate(codes)] + [None, "", "  "]
    values += ["９１３７０８００ＭＡ００００００１２", "中文 名称", "中文 名称 "]
    path = tmp_path / "c.parquet"
    groups = [None if i % 17 == 0 else str(i % 5) for i in range(len(values))]
    pq.write_table(pa.table({"code": values, "county": groups}), path)
    assert distinct_items(path, "code") == _old_distinct(values)
    by_group: dict[str, dict[str, None]] = {}
    for value, group in zip(values, groups, strict=True):
        if value is not None and group is not None and (text := normalise(value)):
            by_group.setdefault(group, {}).setdefault(text, None)
    assert distinct_items_by_group(path, "code", "county") == {
        g: list(v) for g, v in by_group.items()
    }


def test_reading_the_column_imports_no_pandas(tmp_path):
    """Turning a Python value into an Arrow one imports pandas (half a second of a
    server's first build, issue 23); the column's path does none of it."""
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"code": [firm_code(i) for i in range(50)] + [" x ", None]}), path)
    code = (
        "import sys\n"
        "from sandbox.psi.column import distinct_items\n"
        f"assert len(distinct_items({str(path)!r}, 'code')) == 51\n"
        "assert 'pandas' not in sys.modules\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert done.returncode == 0, done.stderr


def test_tasks_cover_every_part_in_order():
    assert task_items(1_000_000, 2) == 15_625
    assert task_items(600, 2) == 300  # never fewer tasks than processes
    assert task_items(5_000, 2) == 1_000
    parts = [[str(i) for i in range(2500)], ["a"], []]
    tasks = plan_tasks(parts, "raw", 1000)
    assert [(i, len(items)) for i, items in tasks] == [
        (0, 1000),
        (0, 1000),
        (0, 500),
        (1, 1),
        (2, 0),
    ]
    assert [items for i, items in tasks if i == 0] == [
        parts[0][:1000],
        parts[0][1000:2000],
        parts[0][2000:],
    ]
    assert [(i, len(t)) for i, t in plan_tasks(parts, "gcs", 1000)] == [(0, 2500), (1, 1), (2, 0)]


def _library(key: bytes, items: list[str], structure=psi_lib.DataStructure.RAW) -> bytes:
    server = psi_lib.server.CreateFromKey(key, False)
    return server.CreateSetupMessage(1e-9, 1000, items, structure).SerializeToString()


@pytest.fixture
def small_tasks(monkeypatch):
    """Tasks of a few dozen items, so that a small set takes many tasks and merges."""
    monkeypatch.setattr(build, "MIN_TASK_ITEMS", 37)


def test_a_setup_built_in_tasks_is_the_library_s_own_message(tmp_path, small_tasks):
    values = [firm_code(i) for i in range(900)] + [firm_code(5).lower(), None]
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"code": values}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("s", 1, "code", None, 0, "raw", 1e-9, 1000)
    bundle, meta = build_bundle(key, spec, path, 2)
    kind, [(label, part)] = unpack_parts(bundle)
    assert kind is BundleKind.SHARDS and label == "" and meta["tasks"] > 2
    assert part == _library(key, [firm_code(i) for i in range(900)])
    assert meta["items"] == 900 and meta["processes"] == 2
    assert {"read_s", "encrypt_s", "merge_s", "build_s"} <= set(meta)


def test_groups_and_gcs_shards_are_the_library_s_messages_of_their_items(tmp_path, small_tasks):
    codes = [firm_code(i) for i in range(400)]
    counties = ["a" if i % 4 else "b" for i in range(400)]
    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({"code": codes, "county": counties}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("g", 1, "code", "county", 10, "raw", 1e-9, 1000)
    kind, parts = unpack_parts(build_bundle(key, spec, path, 2)[0])
    assert kind is BundleKind.GROUPS
    assert parts == [
        (g, _library(key, [c for c, k in zip(codes, counties, strict=True) if k == g]))
        for g in ("a", "b")
    ]
    gcs = SetupSpec("g", 1, "code", None, 0, "gcs", 1e-9, 1000)
    kind, parts = unpack_parts(build_bundle(key, gcs, path, 2)[0])
    assert parts == [("", _library(key, s, psi_lib.DataStructure.GCS)) for s in shards_of(codes, 2)]


def test_the_merge_by_records_equals_the_merge_of_messages():
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    shards = shards_of([firm_code(i) for i in range(300)], 7)
    blobs = [_library(key, s) for s in shards]
    assert merge_raw(blobs) == merge_raw_messages(blobs) == _library(key, sum(shards, []))
    # Elements sharing their first 8 bytes are ordered by the whole element.
    same = [b"\x02" + b"\x11" * 7 + os.urandom(25) for _ in range(50)]
    tied = [_raw_setup(sorted(same[:20])), _raw_setup(sorted(same[20:]))]
    assert merge_raw(tied) == merge_raw_messages(tied) == _raw_setup(sorted(same))
    # Elements that are not 33-byte points go the general way.
    odd = [_raw_setup([b"b", b"d"]), _raw_setup([b"a", b"c" * 40])]
    assert merge_raw(odd) == merge_raw_messages(odd) == _raw_setup([b"a", b"b", b"c" * 40, b"d"])


def _raw_setup(elements: list[bytes]) -> bytes:
    setup = psi_lib.ServerSetup()
    setup.raw.encrypted_elements.extend(elements)
    return setup.SerializeToString()


def test_build_processes_have_sessions_of_their_own():
    """The scheduler shares the CPU between sessions first: two build processes in the
    server's session got one core's worth on a busy host (issue 23)."""
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    with build.build_pool(2, key, "a test") as pool:
        assert pool is not None
        sessions = {pool.submit(os.getsid, 0).result() for _ in range(4)}
    assert os.getsid(0) not in sessions
