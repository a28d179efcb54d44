"""The tamper-evident audit ledger (Art. 7, 18).

Append-only entries: sequence number, UTC time, actor (principal and role),
action, subject, details (JSON), article, the previous entry's hash and the
entry's own hash, SHA-256 over the canonical JSON of all other fields. Every
append also rewrites the signed head (``ledger_head``): the platform's Ed25519
signature over the last entry's sequence number and hash. Hence:

* editing an entry breaks its hash;
* deleting one breaks the sequence and the next entry's ``prev_hash``;
* swapping two makes each hash match only under the other's sequence number;
* appending or truncating without the key leaves the head unsigned for the tail.

:func:`verify` walks the chain and names the first entry that fails, and why.
The one thing it cannot see is a rollback of the whole store to an earlier,
consistent copy: publishing the head (``sandbox ledger head``) elsewhere is the
defence against that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.errors import InputError, IntegrityError

from . import keys
from .store import ledger, ledger_head

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who is responsible for an action (Art. 18)."""

    name: str
    role: str
    principal_id: int | None = None


SYSTEM = Actor("platform", "system")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(fields: Mapping[str, Any]) -> str:
    body = {
        k: fields[k]
        for k in (
            "seq",
            "ts",
            "actor",
            "role",
            "action",
            "subject",
            "details",
            "article",
            "prev_hash",
        )
    }
    return hashlib.sha256(canonical(body)).hexdigest()


def _head_message(seq: int, digest: str) -> bytes:
    return f"sandbox-ledger-head:{seq}:{digest}".encode()


def append(
    conn: Connection,
    key: Ed25519PrivateKey,
    actor: Actor,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
    article: str = "Art. 7",
) -> int:
    """Append one entry inside the caller's transaction; return its sequence number."""
    last = conn.execute(
        select(ledger.c.seq, ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    fields = {
        "seq": seq,
        "ts": now_utc(),
        "actor": actor.name,
        "role": actor.role,
        "action": action,
        "subject": subject,
        "details": json.loads(canonical(dict(details or {}))),
        "article": article,
        "prev_hash": prev,
    }
    digest = entry_hash(fields)
    conn.execute(
        ledger.insert().values(
            **{**fields, "details": canonical(fields["details"]).decode(), "hash": digest}
        )
    )
    signature = keys.sign(key, _head_message(seq, digest))
    updated = conn.execute(
        ledger_head.update()
        .where(ledger_head.c.id == 1)
        .values(seq=seq, hash=digest, signature=signature, ts=fields["ts"])
    )
    if updated.rowcount == 0:
        conn.execute(
            ledger_head.insert().values(
                id=1, seq=seq, hash=digest, signature=signature, ts=fields["ts"]
            )
        )
    return seq


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    head_seq: int
    head_hash: str


def _rows(conn: Connection) -> Iterator[dict]:
    result = conn.execute(select(ledger).order_by(ledger.c.seq))
    for row in result.mappings():
        item = dict(row)
        try:
            item["details"] = json.loads(item["details"])
        except (TypeError, ValueError):
            item["details"] = {"__unparsable__": item["details"]}
        yield item


def verify(conn: Connection, public: Ed25519PublicKey) -> VerifyReport:
    """Walk the chain; raise IntegrityError naming the first bad entry."""
    expected_seq = 1
    prev = GENESIS
    last_hash = GENESIS
    count = 0
    for row in _rows(conn):
        seq = row["seq"]
        if seq != expected_seq:
            if seq > expected_seq:
                raise IntegrityError(
                    f"ledger entry {expected_seq} is missing (deleted): the next entry is {seq}",
                    article="Art. 7",
                )
            raise IntegrityError(f"ledger entry {seq} appears twice (inserted)", article="Art. 7")
        if entry_hash(row) != row["hash"]:
            # Does the content belong to another position? Then entries were moved.
            for other in (seq - 1, seq + 1):
                if other >= 1 and entry_hash({**row, "seq": other}) == row["hash"]:
                    raise IntegrityError(
                        f"ledger entry {seq} holds the content of entry {other}: "
                        "entries were reordered",
                        article="Art. 7",
                    )
            raise IntegrityError(
                f"ledger entry {seq} was edited: its content no longer matches its hash",
                article="Art. 7",
            )
        if row["prev_hash"] != prev:
            raise IntegrityError(
                f"ledger entry {seq} does not follow entry {seq - 1}: an entry was inserted, "
                "deleted or replaced before it",
                article="Art. 7",
            )
        prev = row["hash"]
        last_hash = row["hash"]
        expected_seq += 1
        count += 1
    head = conn.execute(select(ledger_head).where(ledger_head.c.id == 1)).mappings().first()
    if count == 0 and head is None:
        return VerifyReport(0, 0, GENESIS)
    if head is None:
        raise IntegrityError("the signed ledger head is missing", article="Art. 7")
    keys.verify(public, _head_message(head["seq"], head["hash"]), head["signature"], "ledger head")
    if head["seq"] < count:
        raise IntegrityError(
            f"ledger entries {head['seq'] + 1} to {count} are not covered by the signed head: "
            "they were appended without the platform key",
            article="Art. 7",
        )
    if head["seq"] == count and head["hash"] != last_hash:
        raise IntegrityError(
            f"ledger entry {count} does not match the signed head: the chain was rewritten "
            "(entries edited and their hashes recomputed)",
            article="Art. 7",
        )
    if head["seq"] > count or head["hash"] != last_hash:
        raise IntegrityError(
            f"the signed head names entry {head['seq']}, but the ledger ends at entry {count}: "
            "entries were deleted from the end",
            article="Art. 7",
        )
    return VerifyReport(count, head["seq"], head["hash"])


def time_bound(value: str, field: str, *, end: bool = False) -> str:
    """An ISO date or time given by a user, as the ledger writes times (UTC).

    A time without a zone is UTC. A bare date is the start of that day; as the end
    of a range (``end``) it is the start of the next day, so ``--until 2026-12-04``
    takes in the whole of that day. Anything else is an error naming the field:
    a filter that matched nothing would look like an empty ledger.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                moment += timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{field} '{value}' is not an ISO date or time; give e.g. 2026-12-01 or "
            "2026-12-01T08:00:00+08:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def query(
    conn: Connection,
    *,
    actor: str | None = None,
    subject: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    stmt = select(ledger).order_by(ledger.c.seq)
    if actor:
        stmt = stmt.where(ledger.c.actor == actor)
    if subject:
        stmt = stmt.where(ledger.c.subject == subject)
    if action:
        stmt = stmt.where(ledger.c.action == action)
    if since is not None:
        stmt = stmt.where(ledger.c.ts >= time_bound(since, "since"))
    if until is not None:
        bound = time_bound(until, "until", end=True)
        stmt = stmt.where(ledger.c.ts < bound if len(until.strip()) == 10 else ledger.c.ts <= bound)
    if limit is not None and limit < 1:
        raise InputError(f"limit {limit} must be 1 or more")
    if limit:
        stmt = stmt.limit(limit)
    rows = []
    for row in conn.execute(stmt).mappings():
        item = dict(row)
        try:
            item["details"] = json.loads(item["details"])
        except (TypeError, ValueError):
            item["details"] = {"__unparsable__": item["details"]}  # verify() names the entry
        rows.append(item)
    return rows


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(ledger)).scalar_one()
