"""The quality profile of a dataset version: counts a provider reads before publishing.

Computed by DuckDB over the Parquet snapshot in the vault: one scan over every
column (rows, nulls, distinct values), then one over each of the entity key and
the columns with a declared format, grouped by value (how often each key
repeats; how many rows hold a valid ID, checked once per distinct value). Nothing in a profile is a data value:
only counts and shares, so a profile may be shown and ledgered.

What a profile says, and why:

``rows``
    rows in the snapshot.
``distinct_method``
    ``exact`` (``count(DISTINCT)``) up to :data:`EXACT_DISTINCT_MAX_ROWS` rows,
    ``approximate`` (HyperLogLog, ``approx_count_distinct``, a few per cent off)
    above, where exact counts over every column would cost memory and time.
    The entity key and the format columns are always counted exactly.
``columns``
    per column: its class, its Arrow type, ``nulls`` and ``null_rate``,
    ``distinct`` and ``distinct_exact`` (bool); and for a column with a declared format (``cn_resident_id``,
    ``cn_credit_code``) the number of ``valid`` values and ``valid_share``, the
    share of the *non-null* values that pass the check (``connectors.validity``).
``duplicate_entity_keys``
    ``distinct_keys``, ``repeated_keys`` (keys on more than one row) and
    ``rows_with_repeated_key``. Not an error: in a monthly payment table each
    person legitimately appears once a month. The provider judges.
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from policies.classes import Classification
from policies.errors import SourceError

from .base import quote_ident

EXACT_DISTINCT_MAX_ROWS = 1_000_000


def _validity_sql(fmt: str, column_sql: str) -> str:
    # Imported here: the checks are only needed when a format is declared.
    from . import validity

    checks = {
        "cn_resident_id": validity.resident_id_valid_sql,
        "cn_credit_code": validity.credit_code_valid_sql,
    }
    return checks[fmt](column_sql)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _grouped_counts(con, source: str, name: str, fmt: str | None) -> dict[str, int]:
    """Exact counts over the distinct non-null values of one column, in one scan of it.

    How many distinct values, how many occur on more than one row and on how
    many rows, and, with a format, on how many rows the value is valid. The
    format check runs once per distinct value, not per row: the SQL checks cost
    about 5 us a value, and identifiers repeat (a person in every monthly row).
    """
    col = quote_ident(name)
    valid = f"coalesce(sum(n) FILTER (WHERE {_validity_sql(fmt, col)}), 0)" if fmt else "0"
    sql = (
        "SELECT count(*), coalesce(count_if(n > 1), 0), coalesce(sum(n) FILTER (WHERE n > 1), 0), "
        f"{valid} FROM (SELECT {col}, count(*) AS n FROM {source} "
        f"WHERE {col} IS NOT NULL GROUP BY {col})"
    )
    distinct, repeated, rows_repeated, valid_rows = con.execute(sql).fetchone()
    return {
        "distinct": int(distinct),
        "repeated": int(repeated),
        "rows_repeated": int(rows_repeated),
        "valid": int(valid_rows),
    }


def profile_parquet(path: str, classification: Classification) -> dict:
    """Profile the Parquet file at ``path`` whose columns ``classification`` describes."""
    if not os.path.isfile(path):
        raise SourceError(f"{path}: Parquet snapshot does not exist")
    try:
        schema = pq.read_schema(path)
        rows_total = pq.read_metadata(path).num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file") from exc
    classification.check_against(schema.names)
    exact = rows_total <= EXACT_DISTINCT_MAX_ROWS
    source = f"read_parquet({_sql_literal(path)})"

    key = classification.entity_key
    counted_exactly = {key, *classification.formats}  # by _grouped_counts, below
    select = ["count(*)"]
    for name in schema.names:
        col = quote_ident(name)
        select.append(f"count({col})")
        if name in counted_exactly:
            select.append("0")  # not counted twice
        else:
            select.append(f"count(DISTINCT {col})" if exact else f"approx_count_distinct({col})")
    con = duckdb.connect()
    try:
        row = con.execute(f"SELECT {', '.join(select)} FROM {source}").fetchone()
        assert row is not None  # an aggregate query returns one row
        values = list(row)
        grouped = {
            name: _grouped_counts(con, source, name, classification.formats.get(name))
            for name in counted_exactly
        }
    except duckdb.Error as exc:
        raise SourceError(f"{path}: profiling failed ({type(exc).__name__})") from exc
    finally:
        con.close()

    rows = int(values.pop(0))
    columns: dict[str, dict] = {}
    for field in schema:
        non_null, distinct = int(values.pop(0)), int(values.pop(0))
        nulls = rows - non_null
        if field.name in grouped:  # counted exactly anyway
            distinct = grouped[field.name]["distinct"]
        entry = {
            "class": classification.class_of(field.name).value,
            "type": str(field.type),
            "nulls": nulls,
            "null_rate": nulls / rows if rows else 0.0,
            "distinct": distinct,
            "distinct_exact": exact or field.name in grouped,
        }
        fmt = classification.formats.get(field.name)
        if fmt:
            valid = grouped[field.name]["valid"]
            entry.update(
                format=fmt, valid=valid, valid_share=valid / non_null if non_null else None
            )
        columns[field.name] = entry
    keys = grouped[key]
    return {
        "rows": rows,
        "distinct_method": "exact" if exact else "approximate",
        "columns": columns,
        "duplicate_entity_keys": {
            "column": classification.entity_key,
            "distinct_keys": keys["distinct"],
            "repeated_keys": keys["repeated"],
            "rows_with_repeated_key": keys["rows_repeated"],
        },
    }


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def format_profile(profile: dict) -> str:
    """The profile as a plain-text table for a terminal or a review note."""
    header = ("column", "class", "type", "null rate", "distinct", "valid format")
    lines = []
    for name, col in profile["columns"].items():
        valid = f"{_pct(col['valid_share'])} {col['format']}" if "format" in col else ""
        lines.append(
            (
                name,
                col["class"],
                col["type"],
                _pct(col["null_rate"]),
                ("" if col["distinct_exact"] else "~") + f"{col['distinct']:,}",
                valid,
            )
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    right = {3, 4}

    def render(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    dup = profile["duplicate_entity_keys"]
    exact = profile["distinct_method"] == "exact"
    method = "distinct counts exact" if exact else "distinct counts marked ~ are approximate"
    out = [
        f"rows: {profile['rows']:,}  ({method})",
        render(header),
        render(tuple("-" * w for w in widths)),
        *(render(row) for row in lines),
        f"entity key '{dup['column']}': {dup['distinct_keys']:,} distinct, "
        f"{dup['repeated_keys']:,} on more than one row "
        f"({dup['rows_with_repeated_key']:,} rows)",
    ]
    return "\n".join(out)
