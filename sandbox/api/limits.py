"""Limits at the door: request body size, upload size, requests per principal.

The body cap is enforced twice: a declared ``Content-Length`` over the cap is
answered 413 before a byte is read, and a body sent without one (chunked) is
counted while it streams in and cut off at the cap. Uploads (``POST
/v1/datasets/upload``) have their own, larger cap. Both 413s name the limit
and the setting that sets it.

The rate limit is a token bucket per principal, in the memory of one server
process (``api.rate_per_minute``): a burst of up to a minute's allowance, then
one request per ``60 / rate`` seconds. With ``--workers N`` each process keeps
its own buckets, so the server as a whole allows up to N times the rate; a
shared bucket in the store would cost a write per request. Known shortcut.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .codes import PayloadTooLarge, RateLimited
from .errors import envelope, new_request_id

MIB = 1024 * 1024
UPLOAD_PATH = "/v1/datasets/upload"
# Bulk bodies that share the upload cap (the route may apply a tighter one of its own).
BULK_PATHS = frozenset({UPLOAD_PATH, "/v1/he/sum"})


def _mib(value: float) -> str:
    return f"{value:g} MiB"


@dataclass(frozen=True)
class BodyCaps:
    body_mb: float
    upload_mb: float

    def for_path(self, path: str) -> tuple[int, str]:
        """(cap in bytes, the words that name it) for a request path."""
        if path in BULK_PATHS:
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
    """Token buckets keyed by principal id; thread-safe (sync routes run in a pool)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: int) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.refill_per_s)
                error = RateLimited(
                    f"over the rate limit of {self.per_minute} requests per minute per principal "
                    f"(setting api.rate_per_minute); retry in {wait} s"
                )
                error.headers = {"Retry-After": str(wait)}
                raise error
            self._buckets[key] = (tokens - 1.0, now)
