"""A suggested classification for a source: what each column looks like, and the evidence.

``suggest(uri)`` reads the source's first rows (``rows``, 200,000 by default) into
DuckDB and profiles every column in one query each; :func:`propose` turns the
figures into a class, and :func:`to_yaml` writes the classification file the
provider edits, every column with its evidence as a comment. Nothing here registers
anything: the provider reads the file, corrects it and registers with it.

The rules, first match wins (share = of the non-empty values):

* text whose share of valid GB 11643 resident IDs is at least :data:`SHARE` ->
  identifier, format ``cn_resident_id``; GB 32100 credit codes likewise
  (``cn_credit_code``); mainland phone numbers (mobile ``1[3-9]`` and 9 digits, or
  a landline with its area code) -> identifier;
* name-like text (two to four Han characters, or a middle dot between Han
  names), with many distinct values or a name hint in the column's name -> identifier;
* a date of birth (a date, or text or a number reading as ``YYYYMMDD`` /
  ``YYYY-MM-DD``, whose column name says birth) -> quasi, with a range of years;
  any other date -> quasi too (a date identifies in combination), range of years;
* addresses (text averaging 6 characters or more, with province, city, district,
  road or number words in most values) -> quasi;
* at most ``max_codes`` distinct values, each used on more than one row on average
  -> dimension, with its code list as the declared domain (the values seen: the
  provider adds the codes no row uses, since a domain is the provider's statement);
* numbers -> measure, with bounds from the 1st to the 99th percentile widened to
  round numbers (the DP mode clamps each entity's value to them);
* any other text -> identifier (default deny: never output until the provider says
  otherwise).

The entity key is the first identifier column whose values are all distinct, a
resident ID or credit code first; ``entity_kind`` follows from its format. A key on
several rows gives ``rows_per_entity``, its most rows in the rows read.

Evidence never holds a data value except the code lists and the ranges, which the
provider, who owns the data, is asked to confirm.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from policies.classes import Classification

from .base import quote_ident

SHARE = 0.9  # share of valid values that makes a format or pattern the column's kind
DEFAULT_ROWS = 200_000
MAX_CODES = 50
ROWS_PER_ENTITY_MAX = 10_000  # the classification's own limit
PHONE_RE = r"(\+?86[- ]?)?(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})"
NAME_RE = r"[\x{4e00}-\x{9fff}]{2,4}|[\x{4e00}-\x{9fff}]{1,10}·[\x{4e00}-\x{9fff}]{1,10}"
ADDRESS_RE = r"[省市区县镇乡村路街道巷弄号室楼栋组]"
NAME_HINTS = ("name", "姓名", "名称", "xm", "联系人", "法人", "户主")
BIRTH_HINTS = ("birth", "dob", "born", "出生", "生日", "csrq")
ADDRESS_HINTS = ("addr", "地址", "住址", "住所", "dz")


@dataclass
class ColumnSuggestion:
    """The class proposed for one column, why, and the figures it rests on."""

    name: str
    cls: str
    reason: str
    evidence: dict[str, Any]
    fmt: str | None = None
    domain: dict[str, Any] | None = None
    bounds: tuple[float, float] | None = None


@dataclass
class Suggestion:
    source: str
    rows: int
    complete: bool  # False when the source has more rows than were read
    columns: list[ColumnSuggestion] = field(default_factory=list)
    entity_key: str = ""
    entity_kind: str | None = None
    rows_per_entity: int = 1  # the most rows one entity key has in the rows read
    notes: list[str] = field(default_factory=list)

    def classification(self) -> dict[str, Any]:
        """The suggested classification as the file's keys (checked by Classification)."""
        out: dict[str, Any] = {
            "entity_key": self.entity_key,
            "columns": {c.name: c.cls for c in self.columns},
        }
        if self.entity_kind:
            out["entity_kind"] = self.entity_kind
        formats = {c.name: c.fmt for c in self.columns if c.fmt}
        if formats:
            out["formats"] = formats
        domains = {c.name: c.domain for c in self.columns if c.domain}
        if domains:
            out["domains"] = domains
        bounds = {c.name: list(c.bounds) for c in self.columns if c.bounds}
        if bounds:
            out["bounds"] = bounds
        if self.rows_per_entity > 1:
            out["rows_per_entity"] = self.rows_per_entity
        Classification.from_dict(out)  # the same checks as a file the provider writes
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "complete": self.complete,
            "classification": self.classification(),
            "evidence": {
                c.name: {"class": c.cls, "reason": c.reason, **c.evidence} for c in self.columns
            },
            "notes": list(self.notes),
        }


def suggest(uri: str, *, rows: int = DEFAULT_ROWS, max_codes: int = MAX_CODES) -> Suggestion:
    """Profile the first ``rows`` rows of the source and propose a classification."""
    from .registry import open_source

    batches: list[pa.RecordBatch] = []
    taken = 0
    complete = True
    with open_source(uri, batch_rows=min(rows, 65536)) as source:
        schema, shown = source.schema, source.uri
        for batch in source.batches():
            if taken >= rows:
                complete = False
                break
            batches.append(batch.slice(0, rows - taken))
            taken += min(batch.num_rows, rows - taken)
    table = pa.Table.from_batches(batches, schema=schema)
    result = Suggestion(source=shown, rows=table.num_rows, complete=complete)
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        con.register("t", table)
        for column in schema:
            stats = _profile(con, column.name, column.type, max_codes)
            result.columns.append(propose(column.name, column.type, stats, max_codes))
        _choose_entity_key(result)
        _rows_per_entity(con, result)
    finally:
        con.close()
    if not complete:
        result.notes.append(
            f"profiled the first {taken:,} rows only; codes and ranges may miss later values"
        )
    return result


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return "date"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return "other"


def _profile(con, name: str, kind: pa.DataType, max_codes: int) -> dict[str, Any]:
    """Counts over one column (each a share's numerator), and its codes when few."""
    from .validity import credit_code_valid_sql, resident_id_valid_sql

    col = quote_ident(name)
    parts = ["count(*)", f"count({col})", f"count(DISTINCT {col})"]
    keys = ["rows", "non_null", "distinct"]
    sort = _kind(kind)
    if sort == "text":
        value = f"trim({col})"
        birth = (
            f"coalesce(try_strptime({value}, '%Y%m%d'), try_strptime({value}, '%Y-%m-%d'), "
            f"try_strptime({value}, '%Y/%m/%d'))"
        )
        parts += [
            f"count_if({resident_id_valid_sql(col)})",
            f"count_if({credit_code_valid_sql(col)})",
            f"count_if(regexp_full_match({value}, '{PHONE_RE}'))",
            f"count_if(regexp_full_match({value}, '{NAME_RE}'))",
            f"count_if(regexp_matches({value}, '{ADDRESS_RE}'))",
            f"avg(length({value}))",
            f"count_if({birth} IS NOT NULL)",
            f"min(year({birth}))",
            f"max(year({birth}))",
        ]
        keys += ["resident_id", "credit_code", "phone", "name_like", "address_words"]
        keys += ["mean_length", "dates", "first_year", "last_year"]
    elif sort in ("int", "float"):
        number = f"CAST({col} AS DOUBLE)"
        parts += [
            f"min({number})",
            f"max({number})",
            f"quantile_cont({number}, 0.01)",
            f"quantile_cont({number}, 0.99)",
            f"count_if({number} != floor({number}))",
            f"count_if(try_strptime(CAST({col} AS VARCHAR), '%Y%m%d') IS NOT NULL)",
            f"count_if(regexp_full_match(CAST({col} AS VARCHAR), '{PHONE_RE}'))",
            f"count_if({resident_id_valid_sql(f'CAST({col} AS VARCHAR)')})",
        ]
        keys += ["min", "max", "p01", "p99", "fractional", "dates", "phone", "resident_id"]
    elif sort == "date":
        parts += [f"min(year({col}))", f"max(year({col}))", f"count({col})"]
        keys += ["first_year", "last_year", "dates"]
    row = con.execute(f"SELECT {', '.join(parts)} FROM t").fetchone()
    stats = dict(zip(keys, row, strict=True))
    if stats["distinct"] <= max_codes and sort in ("text", "int", "bool"):
        codes = con.execute(
            f"SELECT DISTINCT {col} FROM t WHERE {col} IS NOT NULL ORDER BY 1"
        ).fetchall()
        stats["codes"] = [c[0] for c in codes]
    return stats


def _share(stats: dict[str, Any], key: str) -> float:
    return (stats.get(key) or 0) / stats["non_null"] if stats["non_null"] else 0.0


def _hinted(name: str, hints: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(h in lowered for h in hints)


def _evidence(stats: dict[str, Any], **more: Any) -> dict[str, Any]:
    out = {"rows": stats["rows"], "non_null": stats["non_null"], "distinct": stats["distinct"]}
    out.update({k: round(v, 4) if isinstance(v, float) else v for k, v in more.items()})
    return out


def propose(
    name: str, kind: pa.DataType, stats: dict[str, Any], max_codes: int = MAX_CODES
) -> ColumnSuggestion:
    """The class of one column from its figures (the rules of the module's docstring)."""
    sort = _kind(kind)
    if sort in ("text", "int"):
        found = _identifier(name, stats, numeric=sort == "int")
        if found is not None:
            return found
    if stats["non_null"] and _share(stats, "dates") >= SHARE and sort in ("text", "int", "date"):
        if sort == "date" or _hinted(name, BIRTH_HINTS):
            return _date(name, stats)
    if sort == "text" and (
        _hinted(name, ADDRESS_HINTS)
        or (_share(stats, "address_words") >= 0.6 and (stats.get("mean_length") or 0) >= 6)
    ):
        return ColumnSuggestion(
            name, "quasi", "addresses: identify in combination, output only generalised",
            _evidence(stats, share_address_words=_share(stats, "address_words")),
        )  # fmt: skip
    codes = stats.get("codes")
    if codes is not None and (stats["non_null"] > 2 * len(codes) or sort == "bool"):
        return ColumnSuggestion(
            name, "dimension",
            f"{len(codes)} distinct codes: a grouping value; the code list is the values seen, "
            "add any code no row uses",
            _evidence(stats), domain={"codes": codes},
        )  # fmt: skip
    if sort in ("int", "float"):
        return _measure(name, stats)
    return ColumnSuggestion(
        name, "identifier",
        "text with many distinct values and no known pattern: identifying until you say "
        "otherwise (default deny)",
        _evidence(stats),
    )  # fmt: skip


def _identifier(name: str, stats: dict[str, Any], *, numeric: bool) -> ColumnSuggestion | None:
    for key, fmt, what in (
        ("resident_id", "cn_resident_id", "GB 11643 resident identity numbers: name a person"),
        ("credit_code", "cn_credit_code", "GB 32100 credit codes: name an enterprise"),
        ("phone", None, "phone numbers: name a person or enterprise"),
    ):
        share = _share(stats, key)
        if stats["non_null"] and share >= SHARE:
            found = ColumnSuggestion(
                name, "identifier", what,
                _evidence(stats, share_valid=share), fmt=fmt,
            )  # fmt: skip
            if fmt and numeric:  # the vault refuses a format on a number column
                found.fmt = None
                found.reason += (
                    f"; read as numbers, so the format {fmt} is not declared: read the "
                    f"column as text (e.g. ?text={name}) to have it checked"
                )
            return found
    share = _share(stats, "name_like")
    many = stats["distinct"] >= max(0.5 * stats["non_null"], MAX_CODES)
    if stats["non_null"] and share >= SHARE and (many or _hinted(name, NAME_HINTS)):
        return ColumnSuggestion(
            name, "identifier", "names of persons (two to four Han characters)",
            _evidence(stats, share_name_like=share),
        )  # fmt: skip
    return None


def _date(name: str, stats: dict[str, Any]) -> ColumnSuggestion:
    first, last = stats.get("first_year"), stats.get("last_year")
    birth = _hinted(name, BIRTH_HINTS)
    reason = "a date of birth" if birth else "a date"
    domain = None
    if first is not None and last is not None:
        domain = {"range": {"from": int(first), "to": max(int(last), dt.date.today().year)}}
    return ColumnSuggestion(
        name, "quasi", f"{reason}: identifies in combination, output only generalised (years)",
        _evidence(stats, share_dates=_share(stats, "dates")), domain=domain,
    )  # fmt: skip


def _round_out(value: float, up: bool) -> float:
    """``value`` moved outwards to a number with two significant digits."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return float((math.ceil if up else math.floor)(value / step) * step)


def _measure(name: str, stats: dict[str, Any]) -> ColumnSuggestion:
    low, high = stats.get("p01"), stats.get("p99")
    bounds = None
    if low is not None and high is not None:
        lo, hi = min(0.0, _round_out(low, up=False)), _round_out(high, up=True)
        if hi <= lo:
            hi = lo + 1.0
        bounds = (lo, hi)
    return ColumnSuggestion(
        name, "measure",
        "numbers: output only aggregated; bounds from the 1st to the 99th percentile, the "
        "range the DP mode clamps one entity's value to",
        _evidence(stats, min=stats.get("min"), max=stats.get("max"), p01=low, p99=high),
        bounds=bounds,
    )  # fmt: skip


def _rows_per_entity(con, result: Suggestion) -> None:
    """A key on several rows (monthly records): its most rows, as rows_per_entity (the
    release rules' L0 bound; one grouping set may not reach them all: the provider judges)."""
    key = next(c for c in result.columns if c.name == result.entity_key)
    if key.evidence["distinct"] >= key.evidence["non_null"]:
        return
    col = quote_ident(key.name)
    most = con.execute(
        f"SELECT max(n) FROM (SELECT count(*) AS n FROM t WHERE {col} IS NOT NULL GROUP BY {col})"
    ).fetchone()[0]
    key.evidence["most_rows_of_one_key"] = int(most or 1)
    result.rows_per_entity = max(1, min(int(most or 1), ROWS_PER_ENTITY_MAX))
    result.notes.append(
        f"an entity key has up to {result.rows_per_entity:,} rows: rows_per_entity is proposed "
        "as that; lower it to the most rows one entity reaches in one grouping (12 for monthly "
        "records grouped by month)"
    )


def _choose_entity_key(result: Suggestion) -> None:
    identifiers = [c for c in result.columns if c.cls == "identifier"]
    unique = [c for c in identifiers if c.evidence["distinct"] == c.evidence["rows"] > 0]
    ranked = sorted(unique or identifiers, key=lambda c: (c.fmt is None, c.fmt != "cn_resident_id"))
    if ranked:
        key = ranked[0]
        if not unique:
            result.notes.append(
                f"no identifier column has a distinct value on every row; '{key.name}' is "
                "proposed as the entity key: check that it names the person or enterprise"
            )
    else:
        key = max(result.columns, key=lambda c: c.evidence["distinct"])
        key.cls, key.domain, key.bounds = "identifier", None, None
        key.reason = "no column looks like an identifier: the one with most distinct values"
        result.notes.append(
            f"no column looks like an identifier; '{key.name}' is proposed as the entity key "
            "and classified identifier: name the column that identifies the person or enterprise"
        )
    result.entity_key = key.name
    result.entity_kind = {"cn_resident_id": "person", "cn_credit_code": "organisation"}.get(
        key.fmt or ""
    )


def to_yaml(suggestion: Suggestion) -> str:
    """The classification file, each column's evidence as a comment, for the provider to edit."""
    import yaml

    data = suggestion.classification()
    head = [
        f"# Suggested classification of {suggestion.source} ({suggestion.rows:,} rows read).",
        "# Nothing is registered yet: check every class, correct it, and register with",
        "#   sandbox dataset register NAME --source SOURCE --classification THIS_FILE",
        *[f"# NOTE: {note}" for note in suggestion.notes],
    ]
    lines = list(head)
    for key, value in data.items():
        if key != "columns":
            flow = None if isinstance(value, dict) else False  # lists inline, the rest in blocks
            block = yaml.safe_dump(
                {key: value}, allow_unicode=True, sort_keys=False, default_flow_style=flow, width=88
            )
            lines.append(block.rstrip("\n"))
            continue
        lines.append("columns:")
        for c in suggestion.columns:
            figures = ", ".join(_figure(k, v) for k, v in c.evidence.items())
            lines.append(f"  # {c.reason}")
            lines.append(f"  #   ({figures})")
            lines.append("  " + yaml.safe_dump({c.name: c.cls}, allow_unicode=True).strip())
    return "\n".join(lines) + "\n"


def _figure(key: str, value: Any) -> str:
    """``500 distinct`` or ``share_valid 100.0%``: one figure of the evidence, for a comment."""
    key = {"non_null": "non-empty"}.get(key, key)
    if key.startswith("share"):
        return f"{key.removeprefix('share_').replace('_', ' ')} {100 * value:.1f}%"
    if isinstance(value, float) and not value.is_integer():
        return f"{key} {value:.4g}"
    if isinstance(value, int | float):
        return f"{key} {int(value):,}"
    return f"{key} {value}"
