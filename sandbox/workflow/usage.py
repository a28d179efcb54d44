"""Usage reports (Art. 16) and evaluation figures (Art. 23), drawn from the ledger.

The ledger is the one record every figure comes from, so an operator's report
and the authority's evaluation cannot disagree with the audit trail. A report
covers a period (``2026-Q3``, ``2026-07`` or ``2026``) and is written as JSON,
CSV (one row per week) and a PNG bar chart of weekly activity. The PNG is
drawn here with zlib and struct (no plotting library): one group of bars per
week, in the colours named in the JSON's ``chart`` key.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import InputError, NotFound
from policies.workflow import covers
from sandbox.core import ledger as ledger_mod
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_name, require_role
from sandbox.core.store import products
from sandbox.workflow.tables import agreements, feedback

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


def _metric(entry: Mapping, operator: str, owned: set[str]) -> str | None:
    action, subject = entry["action"], entry["subject"]
    product = subject.split(":", 1)[1] if subject.startswith("product:") else None
    if entry["actor"] == operator:
        if action == "job.submitted":
            return "jobs"
        if action == "job.refused":
            return "refusals"
        if action == "job.withheld":
            return "withheld"
        if action == "product.release":
            return "products"
    if product in owned:
        if action == "product.download":
            return "downloads"
        if action.startswith("verification."):
            return "verifications"
    if action == "feedback.given" and entry["details"].get("product") in owned:
        return "feedback"
    return None


def figures(conn: Connection, operator: str, start: datetime, end: datetime) -> dict:
    """Counts per metric and per week (Monday-based) of an operator's activity."""
    op = by_name(conn, operator, Role.OPERATOR)
    owned = set(
        conn.execute(select(products.c.id).where(products.c.operator_id == op.id)).scalars()
    )
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
        metric = _metric(entry, operator, owned)
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
        if viewer.role is Role.AUTHORITY and viewer.jurisdiction != "city":
            mine = conn.execute(
                select(agreements.c.jurisdiction).where(agreements.c.operator_id == op.id)
            ).scalars()
            if not any(covers(viewer.jurisdiction, j) for j in mine):
                raise NotFound(f"no usage of '{operator}' in your county")
        data = figures(conn, operator, start, end)
    data["period"] = period
    data["chart"] = {
        m: f"#{COLOURS[m][0]:02x}{COLOURS[m][1]:02x}{COLOURS[m][2]:02x}" for m in METRICS
    }
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
    (out / "usage.png").write_bytes(bar_chart_png(report["weeks"], METRICS))
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


# --- a small PNG writer ------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(pixels: Sequence[bytearray], width: int, height: int) -> bytes:
    """An 8-bit RGB PNG from rows of ``width * 3`` bytes."""
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def bar_chart_png(weeks: Sequence[Mapping], metrics: Sequence[str], height: int = 200) -> bytes:
    """Grouped bars: one group per week, one bar per metric, scaled to the largest count."""
    bar, gap, margin = 4, 6, 10
    group = bar * len(metrics) + gap
    width = max(2 * margin + group * max(len(weeks), 1), 64)
    top = max([w[m] for w in weeks for m in metrics] + [1])
    rows = [bytearray(b"\xff" * (width * 3)) for _ in range(height)]
    base = height - margin
    for x in range(margin, width - margin):  # the axis
        rows[base][3 * x : 3 * x + 3] = b"\x00\x00\x00"
    for i, week in enumerate(weeks):
        for j, metric in enumerate(metrics):
            size = round((base - margin) * week[metric] / top)
            x0 = margin + i * group + j * bar
            for y in range(base - size, base):
                for x in range(x0, x0 + bar - 1):
                    rows[y][3 * x : 3 * x + 3] = bytes(COLOURS.get(metric, (0, 0, 0)))
    return png(rows, width, height)
