"""A product's report for people: ``report.html``, ``report.md`` and ``chart.svg`` (issue 26).

Both reports are rendered from one Jinja2 template each (``sandbox/data/templates``,
shipped in the package) over one context (:func:`report_context`): the question (the
SQL, or the job's definition), the datasets and their versions, the release rules
with their parameters in plain words, what was suppressed, noised or rounded, the
columns, the table itself with its rows numbered from 1, and a chart where one helps.

What the report may say is what the operator's view of the check says
(:func:`sandbox.run.views.released_report`): which cells are suppressed, never why.
The rules are described for the whole product from its parameters alone, the same
words whatever the data held.

The HTML stands alone: no script, no link outside the file, a Content-Security-Policy
that allows none, the chart inline as a data URI. Text from the data and the query is
escaped (HTML by Jinja2's autoescape, Markdown by :func:`md_escape`).
"""

from __future__ import annotations

import base64
import functools
import io
import re
import threading
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from sandbox.data.product_table import FLAG_SUFFIX, NOISED, ROUNDED, SUPPRESSED

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHART = "chart.svg"
CHART_MAX_ROWS = 40  # more bars than this are not read as a chart
TABLE_MAX_ROWS = 500  # the report shows the table's first rows; the files hold all
_DRAWING = threading.Lock()
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(value: object) -> str:
    """Text for a Markdown table cell or line: punctuation escaped, on one line."""
    text = "" if value is None else str(value)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def md_fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    runs = [len(m) for m in re.findall(r"`+", text)]
    return "`" * max(3, max(runs, default=0) + 1)


def rule_lines(params: Mapping[str, Any]) -> list[dict[str, str]]:
    """The release rules in plain words, from the product's parameters alone."""
    p = dict(params)
    lines = []

    def add(name: str, value: str, words: str) -> None:
        lines.append({"parameter": name, "value": value, "words": words})

    if "min_entities" in p:
        add(
            "min_entities",
            str(p["min_entities"]),
            f"Every published number comes from at least {p['min_entities']} different "
            "people or organisations; a number from fewer is suppressed.",
        )
    if "dominance_k" in p:
        top = "largest contributor" if p.get("dominance_n") == 1 else "two largest contributors"
        add(
            "dominance_n, dominance_k",
            f"{p.get('dominance_n')}, {p['dominance_k']}",
            f"A total is suppressed when its {top} make up more than "
            f"{float(p['dominance_k']):.0%} of it: it would tell roughly what they hold.",
        )
    if "p_ratio" in p:
        add(
            "p_ratio",
            str(p["p_ratio"]),
            "A total is suppressed when the second largest contributor could work out the "
            f"largest one's value to within {float(p['p_ratio']):.0%}.",
        )
    if "class_share" in p:
        add(
            "class_share",
            str(p["class_share"]),
            f"A count is suppressed when it holds {float(p['class_share']):.0%} or more of a "
            "group: it would tell something about nearly everyone in that group.",
        )
    if p.get("mitigation") == "round_10_5":
        add(
            "mitigation, rounding_base",
            f"round_10_5, {p.get('rounding_base')}",
            f"Counts below 10 are suppressed; the other counts are rounded to a multiple "
            f"of {p.get('rounding_base')}. Sums and averages are not rounded.",
        )
    zero = {"pass": "published", "review": "published only after two output checkers "
            "looked at them", "suppress": "suppressed"}  # fmt: skip
    if p.get("zero_cells") in zero:
        add("zero_cells", str(p["zero_cells"]), f"Counts of zero are {zero[p['zero_cells']]}.")
    add(
        "(always)",
        "",
        "When a number is suppressed, other numbers may be suppressed with it, so that it "
        "cannot be worked out by subtraction from totals. Unless the platform's operators "
        "turned it off (it is on by default), numbers are also compared with everything "
        "published before, and one that would single out a few people by subtraction "
        "from earlier numbers is suppressed.",
    )
    return lines


def _columns(table: pa.Table, measures: Mapping[str, str | None]) -> list[dict[str, str]]:
    flags = {name + FLAG_SUFFIX for name in measures}
    out = []
    for field in table.schema:
        if field.name in measures:
            what = f"measure: {measures[field.name] or 'aggregate'}"
        elif field.name in flags or field.name.endswith(FLAG_SUFFIX):
            what = f"flag: {SUPPRESSED}, {NOISED}, {ROUNDED} or empty"
        else:
            what = "group key"
        out.append({"name": field.name, "type": str(field.type), "what": what})
    return out


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.12g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _row_label(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " / ".join(_shown(row[k]) or "(total)" for k in keys) or "(all)"


def report_context(
    product_id: str,
    table: pa.Table,
    report: Mapping[str, Any],
    manifest: Mapping[str, Any],
    measures: Mapping[str, str | None],
) -> dict[str, Any]:
    """Everything the two templates show (``table`` with its flag columns)."""
    rows = table.to_pylist()
    keys = [n for n in table.column_names if n not in measures and not _is_flag(n, measures)]
    job = dict(manifest.get("job") or {})
    suppressed = [
        {
            "row": c["row"] + 1,
            "column": c["column"],
            "where": _row_label(rows[c["row"]], keys) if c["row"] < len(rows) else "",
        }
        for c in report.get("suppressed_cells") or []
    ]
    dp = report.get("dp") or {}
    noised = [
        {"column": name, "half_width_95": info.get("half_width_95"), "scale": info.get("scale")}
        for name, info in (dp.get("columns") or {}).items()
    ]
    counts = dict(report.get("counts") or {})
    return {
        "product": product_id,
        "created_at": manifest.get("created_at", ""),
        "verdict": report.get("verdict", ""),
        "summary": report.get("summary", ""),
        "sql": job.get("sql"),
        "definition": {k: v for k, v in job.items() if k not in ("sql", "operator")},
        "operator": job.get("operator", ""),
        "datasets": list(manifest.get("datasets") or []),
        "review": (manifest.get("review") or {}).get("approved_by") or [],
        "rules": rule_lines(report.get("params") or {}),
        "counts": {k: counts.get(k, 0) for k in ("cells", "suppressed", "rounded")},
        "suppressed": suppressed,
        "noised": noised,
        "epsilon": dp.get("epsilon") or dp.get("spent"),
        "columns": _columns(table, measures),
        "header": table.column_names,
        "rows": [
            {"number": i + 1, "cells": [_shown(r[n]) for n in table.column_names]}
            for i, r in enumerate(rows[:TABLE_MAX_ROWS])
        ],
        "more_rows": max(0, len(rows) - TABLE_MAX_ROWS),
        "chart": None,
    }


def _is_flag(name: str, measures: Mapping[str, str | None]) -> bool:
    return name.endswith(FLAG_SUFFIX) and any(name.endswith(m + FLAG_SUFFIX) for m in measures)


def chart_svg(table: pa.Table, measures: Mapping[str, str | None]) -> tuple[bytes, str] | None:
    """A bar chart of the first numeric measure by the group keys, as SVG bytes and its
    title; None when a chart would not help (no key, no numeric measure, one row, or
    more than :data:`CHART_MAX_ROWS` rows). Suppressed cells have no bar and say so."""
    keys = [n for n in table.column_names if n not in measures and not _is_flag(n, measures)]
    numeric = [
        n
        for n in measures
        if pa.types.is_integer(table.schema.field(n).type)
        or pa.types.is_floating(table.schema.field(n).type)
        or pa.types.is_decimal(table.schema.field(n).type)
    ]
    if not keys or not numeric or not 2 <= table.num_rows <= CHART_MAX_ROWS:
        return None
    measure = numeric[0]
    rows = table.to_pylist()
    labels = [_row_label(r, keys) for r in rows]
    values = [None if r[measure] is None else float(r[measure]) for r in rows]
    title = f"{measure} by {', '.join(keys)}"
    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    # svg.fonttype none: the text stays text, drawn by the reader's fonts (Chinese too)
    salt = product_salt(table)
    with (
        _DRAWING,
        rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        height = 1.5 + 0.3 * len(rows)
        fig = Figure(figsize=(8.0, height), dpi=100)
        # margins from the labels' lengths, not measured by a layout engine: constrained
        # layout measured every text several times and took most of a small job's release
        left = min(0.6, (0.45 + 0.075 * max(_width(label) for label in labels)) / 8.0)
        fig.subplots_adjust(left=left, right=0.97, top=1 - 0.45 / height, bottom=0.75 / height)
        ax = fig.add_subplot()
        positions = list(range(len(rows)))[::-1]  # the first row on top
        ax.barh(positions, [v or 0.0 for v in values], color="#3b6ea5")
        ax.set_yticks(positions, labels)
        for y, v in zip(positions, values, strict=True):
            if v is None:
                ax.text(0, y, " suppressed", va="center", fontsize="small", color="#8a1c1c")
        ax.set_title(title)
        ax.set_xlabel(f"{measure} ({measures[measure] or 'aggregate'})")
        ax.set_ylabel(", ".join(keys))
        FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None})
    return buffer.getvalue(), title


def _width(text: str) -> float:
    """A label's width in the width of a Latin character: a wide (CJK) one counts two."""
    return sum(2.0 if unicodedata.east_asian_width(ch) in "WF" else 1.0 for ch in text)


def product_salt(table: pa.Table) -> str:
    """The SVG's id salt: the same table draws the same bytes."""
    return str(table.num_rows) + ":" + ",".join(table.column_names)


@functools.cache
def _environments() -> tuple[Any, Any]:
    """The HTML and Markdown Jinja2 environments, made once per process: each keeps its
    compiled templates, so a release does not compile them again."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    html_env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    md_env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    md_env.filters["md"] = md_escape
    md_env.filters["fence"] = md_fence
    return html_env, md_env


def render(context: Mapping[str, Any], chart: bytes | None) -> tuple[bytes, bytes]:
    """``report.html`` and ``report.md`` as bytes."""
    html_env, md_env = _environments()
    data = dict(context)
    if chart is not None:
        data["chart_uri"] = "data:image/svg+xml;base64," + base64.b64encode(chart).decode()
    html = html_env.get_template("report.html.j2").render(**data)
    md = md_env.get_template("report.md.j2").render(**data)
    return html.encode(), md.encode()


def write_reports(
    folder: Path,
    product_id: str,
    table: pa.Table,
    report: Mapping[str, Any],
    manifest: Mapping[str, Any],
    measures: Mapping[str, str | None],
) -> list[str]:
    """Write ``report.html``, ``report.md`` and, where one helps, ``chart.svg`` into
    ``folder``; return the names written."""
    context = report_context(product_id, table, report, manifest, measures)
    drawn = chart_svg(table, measures)
    names = ["report.html", "report.md"]
    chart = None
    if drawn is not None:
        chart, title = drawn
        context["chart"] = {"file": CHART, "title": title}
        (folder / CHART).write_bytes(chart)
        names.append(CHART)
    html, md = render(context, chart)
    (folder / "report.html").write_bytes(html)
    (folder / "report.md").write_bytes(md)
    return names
