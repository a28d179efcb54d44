"""The tamper-evident audit ledger (Art. 7, 18).

Append-only entries: sequence number, UTC time, actor (principal and role),
action, subject, details (JSON), article, the previous entry's hash and the
entry's own hash, SHA-256 over the canonical JSON of all other fields (RFC 8785,
the JSON Canonicalization Scheme, by the ``rfc8785`` package: any tool that
implements the RFC recomputes the hashes). Every
append also rewrites the signed head (``ledger_head``): the platform's Ed25519
signature over the last entry's sequence number and hash. Hence:

* editing an entry breaks its hash;
* deleting one breaks the sequence and the next entry's ``prev_hash``;
* swapping two makes each hash match only under the other's sequence number;
* appending or truncating without the key leaves the head unsigned for the tail;
* an empty ledger is itself a finding: every platform's ledger begins with its
  ``platform.init`` entry.

What the store alone cannot show is a rollback to an earlier, consistent state
(an older copy of ``store.sqlite``, or the later entries deleted and an older
signed head put back). So the last signed head is also kept outside the store, in
``run/ledger-head.json`` beside it (seq, hash, signature; mode 0600): written after
every commit that signed a new head (:func:`publish_head`), atomically (a temp file
and ``os.replace``), under a ``flock``, and only forwards, so that the server
processes of one home never move it back. :func:`verify` refuses a store whose head
is older than that copy, or differs from it at the copy's entry. Someone who can
rewrite the whole home can rewrite the copy too: publishing the head (``sandbox
ledger head``) elsewhere remains the defence against that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from policies.errors import InputError, IntegrityError
from sandbox.core import keys
from sandbox.core.canonical import CANONICAL_FORM, canonical, legacy_canonical
from sandbox.core.store import HOME_OF, after_commit, hold_write_lock, ledger, ledger_head

GENESIS = "0" * 64
# The copy of the last signed head, relative to the folder of the store (the home).
HEAD_COPY = Path("run") / "ledger-head.json"
HEAD_LOCK = "ledger-head.lock"
_log = logging.getLogger("sandbox.core.ledger")


@dataclass(frozen=True)
class Actor:
    """Who is responsible for an action (Art. 18)."""

    name: str
    role: str
    principal_id: int | None = None


SYSTEM = Actor("platform", "system")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


_FORMS: dict[str, Callable[[Any], bytes]] = {}  # store URL -> its ledger's canonical form


def _form_of(conn: Connection) -> Callable[[Any], bytes]:
    """The canonical form of this store's ledger: RFC 8785 when its ``platform.init``
    entry says so, else the form it was begun with (read once per store and process)."""
    url = str(conn.engine.url)
    if url not in _FORMS:
        first = conn.execute(select(ledger.c.details).where(ledger.c.seq == 1)).scalar()
        marked = first is not None and f'"canonical_json":"{CANONICAL_FORM}"' in first
        _FORMS[url] = canonical if marked or first is None else legacy_canonical
    return _FORMS[url]


def entry_hash(fields: Mapping[str, Any], form: Callable[[Any], bytes] | None = None) -> str:
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
    return hashlib.sha256((form or canonical)(body)).hexdigest()


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
    """Append one entry inside the caller's transaction; return its sequence number.

    The last entry is read under the store's write lock, held to the commit, so two
    hosts never read the same last entry and fork the chain: a writing transaction
    took the lock as it began; an append in any other takes it here
    (:func:`sandbox.core.store.hold_write_lock`, a no-op on SQLite)."""
    hold_write_lock(conn)
    last = conn.execute(
        select(ledger.c.seq, ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS if last is None else last.hash
    form = canonical if last is None else _form_of(conn)
    text = form(dict(details or {})).decode()
    fields = {
        "seq": seq,
        "ts": now_utc(),
        "actor": actor.name,
        "role": actor.role,
        "action": action,
        "subject": subject,
        "details": json.loads(text),
        "article": article,
        "prev_hash": prev,
    }
    digest = entry_hash(fields, form)
    conn.execute(ledger.insert().values(**{**fields, "details": text, "hash": digest}))
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
    head = {"seq": seq, "hash": digest, "signature": signature, "ts": fields["ts"]}
    after_commit(conn, "ledger_head", partial(publish_head, conn.engine, head))
    return seq


# --- the copy of the signed head outside the store ------------------------------------------


def head_copy_path(engine: Engine) -> Path | None:
    """Where the copy of ``engine``'s signed head lives: ``run/ledger-head.json`` in the
    home the store was opened for (beside the SQLite file; on PostgreSQL, this host's
    home, whose copy holds the heads this host signed: the store's head only moves
    forward, so it is never behind any host's copy). None for a store opened without
    a home that is not a file."""
    if engine in HOME_OF:
        return HOME_OF[engine] / HEAD_COPY
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).parent / HEAD_COPY


def publish_head(engine: Engine, head: Mapping[str, Any]) -> None:
    """Copy a committed signed head to ``run/ledger-head.json``, never backwards.

    Runs after the commit of every transaction that appended (``after_commit``; the
    last append of a transaction is its head, as the transaction held the write
    lock; an append undone with its SAVEPOINT takes its hook with it), in whichever
    process committed. It writes under an exclusive ``flock`` and only if ``head``
    is later than the copy, so two processes that commit entries 10 and 11 leave 11
    whatever order they get here in. A crash before this step leaves the copy
    behind the store, which is no finding.
    """
    path = head_copy_path(engine)
    if path is None:
        return
    try:
        write_head_copy(path, head)
    except OSError as exc:  # the commit stands; the copy catches up at the next entry
        _log.warning("could not write the ledger head copy %s: %s", path, exc)


def write_head_copy(path: Path, head: Mapping[str, Any]) -> int:
    """Write ``head`` (seq, hash, signature, ts) to ``path`` if it is later than what is
    there; return the seq the copy holds afterwards. Atomic: a temp file and
    ``os.replace``, serialised by ``flock`` on a lock file beside it. Not fsynced,
    like the store's own commits (WAL, ``synchronous=NORMAL``): a power loss may
    take the last commits from both; one that took them from the store only is
    reported by :func:`verify` as the rollback it is (those entries are gone)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(path.parent / HEAD_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = _read_copy(path)
        except IntegrityError:
            current = None  # unreadable: replaced by the head just committed
        if current is not None and current["seq"] >= head["seq"]:
            return current["seq"]
        body = {
            "seq": head["seq"],
            "hash": head["hash"],
            "signature": head["signature"],
            "ts": head["ts"],
        }
        temp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(body, sort_keys=True).encode() + b"\n")
        finally:
            os.close(fd)
        os.replace(temp, path)
        return head["seq"]
    finally:
        os.close(lock)  # closing the descriptor releases the flock


def _read_copy(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        copy = {"seq": int(data["seq"]), "hash": str(data["hash"]), "sig": str(data["signature"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        raise IntegrityError(
            f"the copy of the signed ledger head ({HEAD_COPY}) is unreadable: it was "
            "damaged or replaced",
            article="Art. 7",
        ) from None
    return copy


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
    """Walk the chain; raise IntegrityError naming the first bad entry.

    Then the store's signed head against the copy outside the store (``run/ledger-
    head.json``): a head older than the copy, or another entry at the copy's
    position, is a rollback. The copy is read before the store, so an entry that
    commits meanwhile cannot make the copy look newer than what this read sees.
    """
    copy_path = head_copy_path(conn.engine)
    copy = _read_copy(copy_path) if copy_path is not None else None
    count, last_hash, hash_at_copy = _walk_chain(conn, copy["seq"] if copy else None)
    head = conn.execute(select(ledger_head).where(ledger_head.c.id == 1)).mappings().first()
    if count == 0 and head is None:
        raise IntegrityError(
            "the ledger has no entries and no signed head: every platform's ledger begins "
            "with its platform.init entry, so its entries were deleted"
            + (
                f"; the ledger was rolled back from entry {copy['seq']} (the head signed last, "
                f"{HEAD_COPY}) to entry 0"
                if copy is not None
                else ""
            ),
            article="Art. 7",
        )
    if head is None:
        raise IntegrityError("the signed ledger head is missing", article="Art. 7")
    keys.verify(public, _head_message(head["seq"], head["hash"]), head["signature"], "ledger head")
    _check_head(head, count, last_hash)
    if copy is not None:
        _check_copy(conn, public, copy, head["seq"], hash_at_copy)
    return VerifyReport(count, head["seq"], head["hash"])


def _walk_chain(conn: Connection, copy_seq: int | None) -> tuple[int, str, str | None]:
    """Every entry in order: its number, its hash, its link to the one before. Returns
    the count, the last hash and the hash at the head copy's position (if reached)."""
    expected_seq = 1
    prev = last_hash = GENESIS
    hash_at_copy = None
    form = canonical
    for row in _rows(conn):
        seq = row["seq"]
        if seq == 1 and row["details"].get("canonical_json") != CANONICAL_FORM:
            form = legacy_canonical  # a ledger begun before RFC 8785: its own form throughout
        if seq != expected_seq:
            if seq > expected_seq:
                raise IntegrityError(
                    f"ledger entry {expected_seq} is missing (deleted): the next entry is {seq}",
                    article="Art. 7",
                )
            raise IntegrityError(f"ledger entry {seq} appears twice (inserted)", article="Art. 7")
        if entry_hash(row, form) != row["hash"]:
            # Does the content belong to another position? Then entries were moved.
            for other in (seq - 1, seq + 1):
                if other >= 1 and entry_hash({**row, "seq": other}, form) == row["hash"]:
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
        prev = last_hash = row["hash"]
        if seq == copy_seq:
            hash_at_copy = row["hash"]
        expected_seq += 1
    return expected_seq - 1, last_hash, hash_at_copy


def _check_head(head, count: int, last_hash: str) -> None:
    """The signed head covers exactly the chain: no entry after it, none cut off."""
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


def _check_copy(
    conn: Connection, public: Ed25519PublicKey, copy: dict, head_seq: int, hash_at_copy: str | None
) -> None:
    """The store's (already verified) head is not older than the copy, nor another chain."""
    keys.verify(
        public,
        _head_message(copy["seq"], copy["hash"]),
        copy["sig"],
        f"ledger head copy {HEAD_COPY}",
    )
    if copy["seq"] > head_seq:
        if _committed_hash(conn.engine, copy["seq"]) == copy["hash"]:
            return  # this read began before the copy's entry committed: not a rollback
        gone = (
            f"entry {copy['seq']} was"
            if copy["seq"] == head_seq + 1
            else f"entries {head_seq + 1} to {copy['seq']} were"
        )
        raise IntegrityError(
            f"the ledger was rolled back: the store's signed head is entry {head_seq}, but the "
            f"platform had signed entry {copy['seq']} ({HEAD_COPY}); {gone} removed, or the "
            "store was replaced by an older copy",
            article="Art. 7",
        )
    if hash_at_copy != copy["hash"]:
        raise IntegrityError(
            f"the ledger was rolled back and rewritten: entry {copy['seq']} is not the entry "
            f"the platform signed as its head ({HEAD_COPY}); the chain from there was replaced",
            article="Art. 7",
        )


def _committed_hash(engine: Engine, seq: int) -> str | None:
    """The hash of entry ``seq`` as committed now (a fresh read, not the caller's)."""
    with engine.connect() as fresh:
        return fresh.execute(select(ledger.c.hash).where(ledger.c.seq == seq)).scalar()


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
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    after: int | None = None,
) -> list[dict]:
    """Entries matching the filters, oldest first, from the one after sequence number
    ``after`` (a page's cursor). ``keep`` (a viewer's scope, e.g. a county authority's)
    drops entries before ``limit`` counts them."""
    stmt = select(ledger).order_by(ledger.c.seq)
    if after is not None:
        stmt = stmt.where(ledger.c.seq > after)
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
    if limit and keep is None:
        stmt = stmt.limit(limit)
    rows = []
    result = conn.execute(stmt)
    for row in result.mappings():
        item = dict(row)
        if keep is not None and not keep(item):
            continue
        try:
            item["details"] = json.loads(item["details"])
        except (TypeError, ValueError):
            item["details"] = {"__unparsable__": item["details"]}  # verify() names the entry
        rows.append(item)
        if limit and len(rows) >= limit:
            break
    result.close()
    return rows


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(ledger)).scalar_one()
