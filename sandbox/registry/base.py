"""The one way workflow objects are created and moved: state change plus ledger entry.

:func:`create` and :func:`move` are called inside the caller's
``platform.store.transaction()``; each writes exactly one ledger entry whose
subject is ``"<kind>:<id>"`` and whose details carry ``from`` and ``to``. The
property test replays those entries per subject and must arrive at the state
in the table, by allowed moves only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Row

from policies.errors import InputError, NotFound
from policies.suggest import did_you_mean
from policies.workflow import article_of, check_jurisdiction, check_transition
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import datasets, inserted_id

BEIJING = ZoneInfo("Asia/Shanghai")  # the regulation's clock: Jining keeps Beijing time


def parse_time(text: str | datetime, field: str = "time", *, end: bool = False) -> datetime:
    """An ISO date or time, answered in UTC; a time without a zone is taken as UTC.

    A bare date is a day of the calendar in Beijing (Asia/Shanghai), where the
    regulation's deadlines fall: as a start it begins at 00:00 Beijing time, and as the
    end of a term or a deadline (``end``) it takes in the whole of that day, so
    ``--deadline 2026-12-31`` closes at 2027-01-01 00:00 in Beijing (2026-12-31 16:00
    UTC), as a reader of the notice would expect.
    """
    if isinstance(text, datetime):
        value = text
    else:
        raw = str(text).strip()
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise InputError(f"{field} '{text}' is not an ISO date such as 2026-12-31") from None
        if len(raw) == 10:  # a bare date: a day in Beijing
            value = value.replace(tzinfo=BEIJING) + (timedelta(days=1) if end else timedelta())
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def now_or(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def get(conn: Connection, table: Table, obj_id: int, what: str) -> Row:
    row = conn.execute(select(table).where(table.c.id == obj_id)).first()
    if row is None:
        raise NotFound(f"no {what} {obj_id}")
    return row


def create(
    platform: Platform,
    conn: Connection,
    table: Table,
    kind: str,
    state: StrEnum,
    actor: Actor,
    values: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
    article: str | None = None,
) -> int:
    """Insert an object in its first state; one ledger entry ``<kind>.<state>``."""
    stamp = now_utc()
    row = {**values, "status": state.value, "created_at": stamp}
    if "updated_at" in table.c:
        row["updated_at"] = stamp
    obj_id = inserted_id(conn.execute(table.insert().values(**row)))
    platform.record(
        conn,
        actor,
        f"{kind}.{state.value}",
        f"{kind}:{obj_id}",
        {"from": None, "to": state.value, **(details or {})},
        article or article_of(state),
    )
    return obj_id


def move(
    platform: Platform,
    conn: Connection,
    table: Table,
    kind: str,
    obj_id: int,
    new: StrEnum,
    actor: Actor,
    details: Mapping[str, Any] | None = None,
    article: str | None = None,
    **values: Any,
) -> StrEnum:
    """Move an object to ``new`` if its state table allows it; one ledger entry."""
    row = get(conn, table, obj_id, kind.replace("_", " "))
    old = type(new)(row.status)
    check_transition(f"{kind.replace('_', ' ')} {obj_id}", old, new)
    extra = {"updated_at": now_utc()} if "updated_at" in table.c else {}
    conn.execute(
        table.update().where(table.c.id == obj_id).values(status=new.value, **extra, **values)
    )
    platform.record(
        conn,
        actor,
        f"{kind}.{new.value}",
        f"{kind}:{obj_id}",
        {"from": old.value, "to": new.value, **(details or {})},
        article or article_of(new),
    )
    return old


def require_authority(principal: Principal, jurisdiction: str, action: str, article: str) -> None:
    """An authority whose jurisdiction covers the object's (Art. 5)."""
    require_role(principal, Role.AUTHORITY, action=action, article=article)
    check_jurisdiction(principal.name, principal.jurisdiction, jurisdiction)


def dataset_row(conn: Connection, name: str) -> Row:
    row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
    if row is None:
        known = [r.name for r in conn.execute(select(datasets.c.name))]
        raise NotFound(f"no dataset named '{name}'; " + did_you_mean(name, known or ["(none)"]))
    return row


def loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


def need_text(fields: Mapping[str, str | None], article: str) -> None:
    """Every named field must say something: the regulation requires each."""
    for name, value in fields.items():
        if not (value or "").strip():
            raise InputError(
                f"'{name}' is required and may not be empty ({article})", article=article
            )


def names(values: Sequence[str]) -> list[str]:
    return sorted({v.strip() for v in values if v and v.strip()})
