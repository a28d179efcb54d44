"""Limits at the door: request body size, upload size, requests per principal.

The body cap is enforced twice: a declared ``Content-Length`` over the cap is
answered 413 before a byte is read, and a body sent without one (chunked) is
counted while it streams in and cut off at the cap. Uploads (``POST
/v1/datasets/upload``) have their own, larger cap. Both 413s name the limit
and the setting that sets it.

The rate limit is a token bucket per principal (``api.rate_per_minute``): a burst
of up to a minute's allowance, then one request per ``60 / rate`` seconds. The
buckets are small files under the home's ``run/rate/``, locked with ``flock``, so
every server process of the home (``--workers N``) draws from the same bucket; a
request costs a lock, a 16-byte read and write, not a store transaction. With the
store on PostgreSQL (``store.url``: several hosts) the buckets are rows of the store
(``rate_buckets``), each drawn in a short transaction of its own under its row lock
(``SELECT ... FOR UPDATE``, not the store's write lock) and timed by the database's
clock, so every process of every host draws from one bucket per principal.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies.errors import PayloadTooLarge, RateLimited
from sandbox.api.errors import envelope, new_request_id
from sandbox.api.tables import rate_buckets
from sandbox.core.store import insert_or

MIB = 1024 * 1024
UPLOAD_PATH = "/v1/datasets/upload"
# Bulk bodies that share the upload cap (the route may apply a tighter one of its own).
BULK_PATHS = frozenset({UPLOAD_PATH, "/v1/he/sum", "/v1/evaluation-materials"})


def _console_upload(path: str) -> bool:
    """The console's upload of a dataset's data with its corrected classification."""
    return path.startswith("/console/datasets/") and path.endswith("/classification/upload")


def _mib(value: float) -> str:
    return f"{value:g} MiB"


@dataclass(frozen=True)
class BodyCaps:
    body_mb: float
    upload_mb: float

    def for_path(self, path: str) -> tuple[int, str]:
        """(cap in bytes, the words that name it) for a request path."""
        if path in BULK_PATHS or _console_upload(path):
            return int(
                self.upload_mb * MIB
            ), f"the upload limit of {_mib(self.upload_mb)} (setting api.max_upload_mb)"
        return int(
            self.body_mb * MIB
        ), f"the request body limit of {_mib(self.body_mb)} (setting api.max_body_mb)"


class BodyLimitMiddleware:
    """Pure ASGI, so that it sees the body stream itself, not a parsed request."""

    def __init__(self, app: ASGIApp, caps: BodyCaps):
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, named = self.caps.for_path(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > cap:
                state = scope.setdefault("state", {})
                rid = state.setdefault("request_id", new_request_id())
                response = envelope(
                    PayloadTooLarge.code,
                    f"the request body of {size:,} bytes is over {named}",
                    None,
                    rid,
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise PayloadTooLarge(f"the request body is over {named}")
            return message

        await self.app(scope, counted, send)


class RateLimiter:
    """Token buckets keyed by principal id, shared by every server process of a home.

    Each bucket is 16 bytes (tokens, wall-clock time of the last update) in a file
    of its own under ``folder``, read and written under an exclusive ``flock``, so
    ``--workers N`` processes draw from one bucket per principal instead of N. A
    thread lock serialises this process's threads (``flock`` is per open file, not
    per thread). Without ``folder`` the buckets live in this process's memory.
    """

    _RECORD = struct.Struct("<dd")

    def __init__(self, per_minute: int, folder: Path | None = None, engine: Engine | None = None):
        self.per_minute = per_minute
        self.engine = engine  # the PostgreSQL store: buckets in its rate_buckets table
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.folder = folder
        self._memory: dict[int, tuple[float, float]] = {}
        self._files: dict[int, int] = {}
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def take(self, key: int) -> None:
        if self.engine is not None:  # the row's lock orders the draws: no process lock
            allowed, wait = self._draw_store(key)
        else:
            allowed, wait = self._draw_local(key)
        if not allowed:
            error = RateLimited(
                f"over the rate limit of {self.per_minute} requests per minute per principal "
                f"(setting api.rate_per_minute); retry in {wait} s"
            )
            error.headers = {"Retry-After": str(wait)}
            raise error

    def _draw_local(self, key: int) -> tuple[bool, int]:
        with self._lock:
            if self.folder is None or key in self._memory:
                allowed, wait = self._draw(key, self._memory.get(key), self._memory.__setitem__)
            else:
                try:
                    allowed, wait = self._draw_shared(key)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    # A full disk must not turn every request into an error: this
                    # principal's bucket moves to this process's memory (per process,
                    # so N processes allow up to N times the rate until a restart).
                    allowed, wait = self._draw(key, None, self._memory.__setitem__)
        return allowed, wait

    def _draw(
        self, key: int, state: tuple[float, float] | None, store, now: float | None = None
    ) -> tuple[bool, int]:
        now = time.time() if now is None else now
        tokens, last = state if state is not None else (self.capacity, now)
        tokens = min(self.capacity, tokens + max(0.0, now - last) * self.refill_per_s)
        if tokens < 1.0:
            store(key, (tokens, now))
            return False, math.ceil((1.0 - tokens) / self.refill_per_s)
        store(key, (tokens - 1.0, now))
        return True, 0

    def _draw_shared(self, key: int) -> tuple[bool, int]:
        fd = self._files.get(key)
        if fd is None:
            assert self.folder is not None  # shared buckets are drawn only with a folder
            path = self.folder / f"{int(key)}.bucket"
            fd = self._files[key] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, self._RECORD.size, 0)
            state = self._RECORD.unpack(raw) if len(raw) == self._RECORD.size else None

            def store(_key: int, value: tuple[float, float]) -> None:
                os.pwrite(fd, self._RECORD.pack(*value), 0)

            return self._draw(key, state, store)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _draw_store(self, key: int) -> tuple[bool, int]:
        assert self.engine is not None  # store buckets are drawn only with an engine
        b = rate_buckets
        clock = func.extract("epoch", func.clock_timestamp())
        with self.engine.begin() as conn:
            # a bucket's draw need not wait for the WAL's flush: a crash may forget the last
            # draws (a caller gets a few more requests), never a job, a call or the ledger
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            found = conn.execute(
                select(b.c.tokens, b.c.updated, clock)
                .where(b.c.principal_id == key)
                .with_for_update()
            ).first()
            if found is None:  # the principal's first request: a full bucket
                conn.execute(
                    insert_or(conn, b)
                    .values(principal_id=key, tokens=self.capacity, updated=0.0)
                    .on_conflict_do_nothing()
                )
                found = conn.execute(
                    select(b.c.tokens, b.c.updated, clock)
                    .where(b.c.principal_id == key)
                    .with_for_update()
                ).one()
            state = None if found.updated == 0.0 else (found.tokens, found.updated)

            def store(_key: int, value: tuple[float, float]) -> None:
                conn.execute(
                    b.update()
                    .where(b.c.principal_id == key)
                    .values(tokens=value[0], updated=value[1])
                )

            return self._draw(key, state, store, float(found[2]))

    def close(self) -> None:
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()
