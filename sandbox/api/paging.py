"""Cursor paging of the API's lists (issue 26): ``limit``, ``after``, and a ``next`` link.

A list route with paging answers the rows it always answered, in the order of their
ids; with ``?limit=N`` it answers at most N of them, those after ``?after=ID`` (the id
of the last row of the page before), and names the next page in a ``Link`` header
(RFC 8288): ``Link: </v1/jobs?limit=N&after=ID>; rel="next"``, a path relative to the
server with the request's filters kept, absent on the last page. ``/v1/ledger`` pages
the same way by sequence number, its ``limit`` (default 1000) always set. The body stays a JSON list, so a caller that pages
nothing sees no change. The cursor is the row's id, so a row added while one pages
lands on a later page and none is served twice.

The store reads from the row after ``after`` and stops one row past the page
(``limit + 1``: is there a next page?), so a page costs its own rows, not the whole list
(products: the rows the viewer may not read are skipped on the way, in Python).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from policies.errors import InputError

MAX_LIMIT = 1000

LimitQuery = Query(default=None, ge=1, le=MAX_LIMIT, description="at most this many rows (a page)")


def one_more(limit: int | None) -> int | None:
    """How many rows to read for a page of ``limit``: one more, to know of a next page."""
    return None if limit is None else limit + 1


def cut(
    request: Request,
    response: Response,
    rows: Sequence[dict[str, Any]],
    key: Callable[[dict[str, Any]], Any],
    limit: int | None,
) -> list[dict[str, Any]]:
    """``rows`` read with :func:`one_more`: at most ``limit`` of them, and the ``Link``
    header to the next page when there were more."""
    if limit is None or len(rows) <= limit:
        return list(rows)
    shown = list(rows[:limit])
    link_next(request, response, limit, key(shown[-1]))
    return shown


def link_next(request: Request, response: Response, limit: int, after: Any) -> None:
    """Set ``Link: <path?...&limit=N&after=ID>; rel="next"``, the request's other query
    parameters (its filters) kept."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "after")]
    query = urlencode([*kept, ("limit", limit), ("after", after)])
    response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'


AfterQuery = Query(
    default=None, max_length=200, description="the key (id or name) of the last row seen"
)


def page_of(
    request: Request,
    response: Response,
    rows: Sequence[dict[str, Any]],
    key: str,
    limit: int | None,
    after: str | None,
) -> list[dict[str, Any]]:
    """A page of a list read whole (a short list: datasets, grants, models ...): without
    ``limit`` and ``after`` every row in its own order; with them, the rows in the order
    of ``key`` (an id or a name) after ``after``, at most ``limit``, and the ``Link`` to
    the next page."""
    if limit is None and after is None:
        return list(rows)
    ordered = sorted(rows, key=lambda r: r[key])
    if after is not None:
        pivot = _typed(after, ordered, key)
        ordered = [r for r in ordered if r[key] > pivot]
    window = ordered if limit is None else ordered[: limit + 1]
    return cut(request, response, window, lambda r: r[key], limit)


def _typed(after: str, rows: Sequence[dict[str, Any]], key: str) -> Any:
    """``after`` as the key's type: a number for ids, text for names."""
    if rows and isinstance(rows[0][key], int):
        try:
            return int(after)
        except ValueError:
            raise InputError(
                f"after: the id of the last row seen, a number, not {after!r}"
            ) from None
    return after
