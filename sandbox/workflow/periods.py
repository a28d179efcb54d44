"""The calendar periods a duty falls due in: months, quarters, years (Art. 16, 20, 21, 23).

A schedule says how often something is due (``every``). Its periods are named as
``sandbox report usage --period`` names them (``2026-07``, ``2026-Q3``, ``2026``;
:func:`sandbox.workflow.usage.parse_period` reads each back), in UTC, so a usage report,
a training, a drill and an evaluation fall due on one calendar. A period is due once it
has ended; the first is the one holding the schedule's start, even when it began before.
Usage reports (:mod:`.reporting`) and the security duties (:mod:`.schedules`) both count
their periods here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from policies.errors import InputError

EVERY = ("month", "quarter", "year")
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def check_every(every: str | None, flag: str, allowed: Sequence[str], article: str) -> str | None:
    """``every`` if it names one of ``allowed`` (None: no schedule); refused naming the
    option and the article otherwise."""
    if every is not None and every not in allowed:
        choices = " or ".join(allowed) if len(allowed) < 3 else (
            ", ".join(allowed[:-1]) + f" or {allowed[-1]}")  # fmt: skip
        raise InputError(f"{flag} '{every}': {choices} ({article})", article=article)
    return every


def label_of(day: date, every: str) -> str:
    """The period holding ``day``: ``2026-07``, ``2026-Q3`` or ``2026``."""
    if every == "month":
        return f"{day.year}-{day.month:02d}"
    if every == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


def ended_periods(start: datetime, now: datetime, every: str) -> list[str]:
    """The periods from the one holding ``start`` that ended by ``now``, in UTC, oldest
    first."""
    step = _MONTHS[every]
    start = start.astimezone(UTC) if start.tzinfo else start
    year, month = start.year, step * ((start.month - 1) // step) + 1
    out: list[str] = []
    while True:
        nxt_year, nxt_month = (year + 1, month + step - 12) if month + step > 12 else (
            year, month + step)  # fmt: skip
        if datetime(nxt_year, nxt_month, 1, tzinfo=UTC) > now:
            return out
        out.append(label_of(date(year, month, 1), every))
        year, month = nxt_year, nxt_month
