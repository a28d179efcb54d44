"""The auditor's pages: the ledger as a filterable timeline with a chart of activity per
day and kind, and ``ledger verify`` from the page.

Entries come from :func:`sandbox.registry.jurisdiction.read_ledger`, the function of
``GET /v1/ledger`` (auditors and the authority; a county authority sees its county's
entries only); verification is :func:`sandbox.core.ledger.verify`, as
``GET /v1/ledger/verify``. The filters are those of the API: actor, action, subject and
a date range (the last :data:`DEFAULT_DAYS` days unless given). The chart is an SVG of
its own (:mod:`.charts`), drawn from the same filtered entries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from policies.errors import InputError, IntegrityError
from sandbox.console.charts import activity_svg, per_day_and_kind
from sandbox.console.i18n import translator
from sandbox.console.web import (
    CSP_SVG,
    CurrentSession,
    console_router,
    language,
    render,
)
from sandbox.core import ledger as ledger_mod
from sandbox.registry.jurisdiction import read_ledger

router = console_router()

DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_ENTRIES = 20_000
SHOWN = 300
Text = Annotated[str, Query(max_length=200)]
Day = Annotated[str, Query(max_length=10)]


def _day(value: str, field: str) -> date:
    """A day typed in a filter; one that is not a date is refused naming the field, as
    ``GET /v1/ledger`` refuses it (:func:`~sandbox.core.ledger.time_bound`)."""
    return datetime.fromisoformat(ledger_mod.time_bound(value, field)).date()


def _range(since: str, until: str) -> tuple[date, date]:
    last = _day(until, "until") if until else datetime.now(UTC).date()
    first = _day(since, "since") if since else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InputError(
            f"the range starts (since {first}) after it ends (until {last}): "
            "give a 'since' on or before the 'until'"
        )
    if (last - first).days >= MAX_DAYS:
        raise InputError(
            f"the range from 'since' to 'until' is longer than {MAX_DAYS} days; "
            "choose a shorter one"
        )
    return first, last


def _entries(request: Request, session, filters: dict[str, str]) -> tuple[list[dict], date, date]:
    first, last = _range(filters["since"], filters["until"])
    with request.app.state.platform.store.read() as conn:
        rows = read_ledger(
            conn,
            session.principal,
            actor=filters["actor"] or None,
            action=filters["action"] or None,
            subject=filters["subject"] or None,
            since=first.isoformat(),
            until=last.isoformat(),
            limit=MAX_ENTRIES,
        )
    return rows, first, last


def _filters(
    actor: Text = "", action: Text = "", subject: Text = "", since: Day = "", until: Day = ""
) -> dict[str, str]:
    """The filters of ``GET /v1/ledger``, from the page's query (a dependency of both
    the page and its chart)."""
    return {
        "actor": actor.strip(),
        "action": action.strip(),
        "subject": subject.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }


Filters = Annotated[dict[str, str], Depends(_filters)]


@router.get("/ledger")
def ledger_page(request: Request, session: CurrentSession, filters: Filters) -> Response:
    rows, first, last = _entries(request, session, filters)
    context: dict[str, Any] = {
        "entries": list(reversed(rows))[:SHOWN],
        "total": len(rows),
        "capped": len(rows) >= MAX_ENTRIES,
        "filters": {**filters, "since": first.isoformat(), "until": last.isoformat()},
        "query": request.url.query,
    }
    template = "ledger_results.html" if request.headers.get("hx-request") else "ledger.html"
    return render(request, template, context)


@router.get("/ledger/chart.svg")
def ledger_chart(request: Request, session: CurrentSession, filters: Filters) -> Response:
    """Entries per day and kind over the filtered range, as an SVG image."""
    rows, first, last = _entries(request, session, filters)
    days, series = per_day_and_kind(rows, first, last)
    t = translator(language(request))
    labels = {
        "title": t("ledger.chart_title", first=first.isoformat(), last=last.isoformat()),
        "x": t("ledger.chart_x"),
        "y": t("ledger.chart_y"),
        "empty": t("ledger.chart_empty"),
    }
    return Response(
        activity_svg(days, series, labels),
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": CSP_SVG},
    )


@router.get("/ledger/verify")
def ledger_verify(request: Request, session: CurrentSession) -> Response:
    """Walk the hash chain and the signed head, as ``sandbox ledger verify`` does."""
    platform = request.app.state.platform
    try:
        with platform.store.read() as conn:
            report = ledger_mod.verify(conn, platform.key.public_key())
        result: dict[str, Any] = {
            "ok": True,
            "entries": report.entries,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        }
    except IntegrityError as exc:
        result = {"ok": False, "error": exc.to_dict()}
    return render(request, "ledger_verify.html", {"result": result})
