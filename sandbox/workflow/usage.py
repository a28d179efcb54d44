"""Usage reports (Art. 16) and evaluation figures (Art. 23), drawn from the ledger.

The ledger is the one record every figure comes from, so an operator's report
and the authority's evaluation cannot disagree with the audit trail. A report
covers a period (``2026-Q3``, ``2026-07`` or ``2026``) and is written as JSON,
CSV (one row per week) and a PNG bar chart of weekly activity, drawn with
matplotlib (the Agg backend, no display needed): one group of bars per week, in
the colours named in the JSON's ``chart`` key, with a title naming the operator
and the period, labelled axes and a legend. The PNG carries no timestamp or
version text, so the same report gives the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import InputError, NotFound
from sandbox.core import ledger as ledger_mod
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_name, require_role
from sandbox.core.store import products
from sandbox.registry.jurisdiction import operator_in_scope
from sandbox.registry.tables import feedback, verification_feedback

if TYPE_CHECKING:  # matplotlib is imported where a chart is drawn: it takes ~0.4 s to load
    from matplotlib.figure import Figure

METRICS = ("jobs", "refusals", "withheld", "products", "downloads", "verifications", "feedback")
COLOURS = {  # RGB of each metric's bar in the chart
    "jobs": (66, 110, 180),
    "refusals": (200, 60, 50),
    "withheld": (230, 160, 40),
    "products": (60, 150, 80),
    "downloads": (120, 80, 160),
    "verifications": (40, 160, 170),
    "feedback": (120, 120, 120),
}


def parse_period(text: str) -> tuple[datetime, datetime]:
    """``2026-Q3``, ``2026-07`` or ``2026`` as a half-open UTC interval."""
    value = (text or "").strip().upper()
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", value):
        year, quarter = int(m[1]), int(m[2])
        start = date(year, 3 * quarter - 2, 1)
        end = date(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1)
    elif m := re.fullmatch(r"(\d{4})-(\d{2})", value):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise InputError(f"period '{text}': month must be 01 to 12")
        start = date(year, month, 1)
        end = date(year + (month == 12), 1 if month == 12 else month + 1, 1)
    elif re.fullmatch(r"\d{4}", value):
        start, end = date(int(value), 1, 1), date(int(value) + 1, 1, 1)
    else:
        raise InputError(f"period '{text}': use 2026-Q3, 2026-07 or 2026")
    return (
        datetime(start.year, start.month, start.day, tzinfo=UTC),
        datetime(end.year, end.month, end.day, tzinfo=UTC),
    )


def _metric(entry: Mapping, operator: str, owned: set[str], services: set[str]) -> str | None:
    """The metric an entry counts in, if any: the operator's own acts; the downloads of its
    products by itself and by the consumers they were delivered to (not the authority's
    or an auditor's reads); the calls of its verification products; feedback."""
    action, subject = entry["action"], entry["subject"]
    product = subject.split(":", 1)[1] if subject.startswith("product:") else None
    if action == "verify.call" and subject.split(":", 1)[-1] in services:
        return "verifications"
    if entry["actor"] == operator:
        if action == "job.submitted":
            return "jobs"
        if action == "job.refused":
            return "refusals"
        if action == "job.withheld":
            return "withheld"
        if action == "product.release":
            return "products"
    if product in owned and action == "product.download":
        if entry["actor"] == operator or entry.get("role") == Role.CONSUMER.value:
            return "downloads"
    if action == "feedback.given" and (
        entry["details"].get("product") in owned or entry["details"].get("verification") in services
    ):
        return "feedback"
    return None


def figures(conn: Connection, operator: str, start: datetime, end: datetime) -> dict:
    """Counts per metric and per week (Monday-based) of an operator's activity."""
    op = by_name(conn, operator, Role.OPERATOR)
    owned = set(
        conn.execute(select(products.c.id).where(products.c.operator_id == op.id)).scalars()
    )
    services = {  # its verification products, named by its own definitions in the ledger
        e["subject"].split(":", 1)[1]
        for e in ledger_mod.query(conn, action="verify.defined", actor=operator)
    }
    totals = dict.fromkeys(METRICS, 0)
    first_monday = (start - timedelta(days=start.weekday())).date()
    weeks: dict[str, dict[str, int]] = {}
    day = first_monday
    while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
        weeks[day.isoformat()] = dict.fromkeys(METRICS, 0)
        day += timedelta(days=7)
    for entry in ledger_mod.query(conn, since=start.isoformat(), until=end.isoformat()):
        ts = datetime.fromisoformat(entry["ts"])
        if not start <= ts < end:
            continue
        metric = _metric(entry, operator, owned, services)
        if metric is None:
            continue
        totals[metric] += 1
        monday = (ts - timedelta(days=ts.weekday())).date().isoformat()
        weeks[monday][metric] += 1
    ratings = list(
        conn.execute(
            select(feedback.c.rating).where(
                feedback.c.product_id.in_(owned) if owned else feedback.c.id < 0
            )
        ).scalars()
    )
    ratings += conn.execute(  # Art. 16: on its verification products too
        select(verification_feedback.c.rating).where(
            verification_feedback.c.product.in_(sorted(services))
        )
    ).scalars()
    return {
        "operator": operator,
        "from": start.isoformat(),
        "until": end.isoformat(),
        "totals": totals,
        "mean_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "weeks": [{"week": w, **counts} for w, counts in weeks.items()],
    }


def usage_report(platform: Platform, viewer: Principal, operator: str, period: str) -> dict:
    """The operator itself, an authority covering one of its agreements, or an auditor."""
    start, end = parse_period(period)
    with platform.store.read() as conn:
        op = by_name(conn, operator, Role.OPERATOR)
        if viewer.role is Role.OPERATOR and viewer.id != op.id:
            raise NotFound(f"no usage of '{operator}' that you may read")
        require_role(
            viewer,
            Role.OPERATOR,
            Role.AUTHORITY,
            Role.AUDITOR,
            action="read usage reports",
            article="Art. 16",
        )
        if viewer.role is Role.AUTHORITY and not operator_in_scope(conn, viewer, op.id):
            raise NotFound(f"no usage of '{operator}' in your county")
        data = figures(conn, operator, start, end)
    data["period"] = period
    data["chart"] = {m: _hex(COLOURS[m]) for m in METRICS}
    return data


def write_report(platform: Platform, viewer: Principal, report: Mapping, out: Path) -> dict:
    """Write usage.json, usage.csv and usage.png; record the report in the ledger (Art. 16)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body = json.dumps(report, indent=2, ensure_ascii=False).encode()
    (out / "usage.json").write_bytes(body)
    with open(out / "usage.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["week", *METRICS])
        for week in report["weeks"]:
            writer.writerow([week["week"], *(week[m] for m in METRICS)])
    (out / "usage.png").write_bytes(chart_png(report))
    digest = hashlib.sha256(body).hexdigest()
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            viewer.actor,
            "usage.report",
            f"usage:{report['operator']}",
            {"period": report["period"], "sha256": digest, "totals": report["totals"]},
            "Art. 16",
        )
    return {name: str(out / name) for name in ("usage.json", "usage.csv", "usage.png")}


# --- the chart ---------------------------------------------------------------------------------

# Fonts tried after DejaVu Sans for glyphs it lacks (Chinese operator names), where installed.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
)
CHART_SIZE = (8.0, 4.5)  # inches; the width grows with the number of weeks
CHART_DPI = 100
# One drawing at a time: matplotlib's rcParams and warning filters are global.
DRAWING = threading.Lock()


def font_families() -> list[str]:
    """DejaVu Sans, then the CJK fonts installed here (the console's charts use them too)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in CJK_FONTS if name in installed)]


def chart_figure(report: Mapping, metrics: Sequence[str] = METRICS) -> Figure:
    """The weekly activity of a report as a matplotlib figure (grouped bars per week).

    The title names the operator and the period; the x axis the weeks (by their
    Monday), the y axis the count of events; the legend the metrics.
    """
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    weeks = list(report["weeks"])
    labels = [week["week"] for week in weeks]
    width = max(CHART_SIZE[0], 2.0 + 0.35 * len(weeks))
    with rc_context({"font.family": font_families()}):
        fig = Figure(figsize=(width, CHART_SIZE[1]), dpi=CHART_DPI, layout="constrained")
        ax = fig.add_subplot()
        bar = 0.8 / max(len(metrics), 1)
        for j, metric in enumerate(metrics):
            offset = (j - (len(metrics) - 1) / 2) * bar
            ax.bar(
                [i + offset for i in range(len(weeks))],
                [week[metric] for week in weeks],
                width=bar,
                label=metric,
                color=_hex(COLOURS.get(metric, (0, 0, 0))),
            )
        period = report.get("period") or f"{report['from'][:10]} to {report['until'][:10]}"
        ax.set_title(f"Weekly activity of {report['operator']}, {period}")
        ax.set_xlabel("week (starting Monday)")
        ax.set_ylabel("events")
        step = max(1, len(labels) // 26)  # at most about 26 dates under the axis
        ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        if len(metrics) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def chart_png(report: Mapping, metrics: Sequence[str] = METRICS) -> bytes:
    """The chart of :func:`chart_figure` as PNG bytes, without timestamp or software tag."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    # Tick labels are made when the figure is drawn, so the fonts apply to the drawing too;
    # rcParams and the warning filters are global, hence one drawing at a time.
    with DRAWING, rc_context({"font.family": font_families()}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = chart_figure(report, metrics)
        FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)
