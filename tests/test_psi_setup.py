"""The setup's build (issue 23): the column normalised in Arrow equals the function item by
item.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.normalise import normalise, normalise_all
from sandbox.psi.column import distinct_items, distinct_items_by_group, normalised
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
