"""Deterministic synthetic data for the benchmarks: a utility payments table.

One row is one monthly payment of one household account:

=============  ==========  ==================================================
column         type        content
=============  ==========  ==================================================
``account_id`` string      ``AC`` + 10 digits, one per person
``county``     string      one of 11 county names (skewed: a big city county)
``month``      date        first day of a month, 2023-01 .. 2024-12
``amount``     float64     payment in yuan, two decimals, log-normal
``kwh``        int64       metered consumption
``pid``        string      18-character resident ID with a valid GB 11643
                           check character; about ``rows / 10`` distinct
=============  ==========  ==================================================

Why synthetic and why like this: the benchmarks must run anywhere without a
download, and the shape (strings that repeat per person, a low-cardinality
dimension, a measure) is what the vault's ingestion and the SQL jobs meet in
practice. Rows are generated in chunks from ``numpy.random.default_rng(seed,
chunk)``, so the same ``rows`` always give the same bytes and memory stays
bounded (one chunk plus the per-person tables) whatever ``rows`` is.

Files go to ``bench/data/`` (gitignored) and are reused: a file is only
trusted when its ``.done`` marker exists, written after the file is complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"
GENERATOR_VERSION = 1  # bump when the content changes, so old files are not reused
CHUNK_ROWS = 1_000_000
SEED = 20240601

COUNTIES = (
    "Shizhong",
    "Lixia",
    "Huaiyin",
    "Tianqiao",
    "Licheng",
    "Changqing",
    "Zhangqiu",
    "Jiyang",
    "Laiwu",
    "Pingyin",
    "Shanghe",
)
COUNTY_WEIGHTS = np.array([22, 14, 12, 11, 10, 8, 7, 5, 4, 4, 3], dtype=float)
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)

SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("county", pa.string()),
        ("month", pa.date32()),
        ("amount", pa.float64()),
        ("kwh", pa.int64()),
        ("pid", pa.string()),
    ]
)

MONTHS = tuple(f"{2023 + m // 12}-{1 + m % 12:02d}-01" for m in range(24))

# The classification a provider would file with this table. The benches time the
# organisation-style job of issue 17 (released by the output rules alone, over declared
# code lists); a person job does the same work, then waits for the output checkers.
CLASSIFICATION = {
    "entity_key": "pid",
    "entity_kind": "organisation",
    "domains": {"county": {"codes": list(COUNTIES)}, "month": {"codes": list(MONTHS)}},
    "columns": {
        "account_id": "identifier",
        "county": "dimension",
        "month": "dimension",
        "amount": "measure",
        "kwh": "measure",
        "pid": "identifier",
    },
}


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative integers, zero-padded: shape (len, width), uint8."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _strings(chars: np.ndarray) -> pa.Array:
    """A pyarrow string array from a (n, width) uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    )


def _people(persons: int, rng: np.random.Generator) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Per person: resident ID, account id and county index."""
    area = rng.integers(370100, 370199, persons)
    birth_year = rng.integers(1940, 2005, persons)
    birth_day = rng.integers(0, 365, persons)
    birth = np.datetime64("1970-01-01") + ((birth_year - 1970) * 365.25 + birth_day).astype(
        "timedelta64[D]"
    )
    ymd = birth.astype("datetime64[D]").astype(str)
    yyyymmdd = np.char.replace(ymd, "-", "").astype(np.int64)
    seq = rng.integers(0, 1000, persons)
    body = np.concatenate([_digits(area, 6), _digits(yyyymmdd, 8), _digits(seq, 3)], axis=1)
    check = ID_CHECK[((body - ord("0")).astype(np.int64) @ ID_WEIGHTS) % 11]
    pid = _strings(np.concatenate([body, check[:, None]], axis=1))
    account_digits = _digits(rng.permutation(persons).astype(np.int64) + 10**9, 10)
    prefix = np.tile(np.frombuffer(b"AC", dtype=np.uint8), (persons, 1))
    account = _strings(np.concatenate([prefix, account_digits], axis=1))
    county = rng.choice(len(COUNTIES), persons, p=COUNTY_WEIGHTS / COUNTY_WEIGHTS.sum())
    return pid, account, county


def batches(rows: int, seed: int = SEED) -> Iterator[pa.RecordBatch]:
    """The payments table of ``rows`` rows, in record batches of at most CHUNK_ROWS."""
    persons = max(1, rows // 10)
    pid, account, county_of = _people(persons, np.random.default_rng([seed, 0]))
    counties = pa.array(COUNTIES)
    first_month = np.datetime64("2023-01", "M")
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        rng = np.random.default_rng([seed, 1 + start // CHUNK_ROWS])
        who = pa.array(rng.integers(0, persons, n))
        months = (first_month + rng.integers(0, 24, n).astype("timedelta64[M]")).astype(
            "datetime64[D]"
        )
        amount = np.round(rng.lognormal(4.5, 0.6, n), 2)
        kwh = rng.integers(0, 2000, n)
        county = pc.take(counties, pa.array(county_of[who.to_numpy()]))
        yield pa.RecordBatch.from_arrays(
            [
                pc.take(account, who),
                county,
                pa.array(months, pa.date32()),
                pa.array(amount),
                pa.array(kwh, pa.int64()),
                pc.take(pid, who),
            ],
            schema=SCHEMA,
        )


def _path(rows: int, suffix: str) -> Path:
    return DATA_DIR / f"payments_{rows}_v{GENERATOR_VERSION}.{suffix}"


def _ready(path: Path) -> bool:
    return path.exists() and path.with_name(path.name + ".done").exists()


def _finish(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    path.with_name(path.name + ".done").write_text("ok\n")
    return path


def payments_csv(rows: int) -> Path:
    """The payments table as CSV with a header (generated once, then reused)."""
    path = _path(rows, "csv")
    if _ready(path):
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.part")
    with pacsv.CSVWriter(tmp, SCHEMA) as writer:
        for batch in batches(rows):
            writer.write_batch(batch)
    return _finish(tmp, path)


def payments_parquet(rows: int) -> Path:
    """The payments table as Parquet (a source for the vault; generated once, then reused)."""
    path = _path(rows, "parquet")
    if _ready(path):
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.part")
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for batch in batches(rows):
            writer.write_batch(batch)
    return _finish(tmp, path)
