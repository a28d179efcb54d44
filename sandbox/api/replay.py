"""``Idempotency-Key`` on every POST of the API (issue 26): a retried request acts once.

A client that may retry (a timeout, a dropped connection) sends a key of its choosing in
the ``Idempotency-Key`` header; the Python client sends a fresh UUID per call and the
same one on each retry. For every ``POST /v1/...`` but job submission (whose key replays
the job as it is *now*, :mod:`sandbox.api.idempotency`), this middleware keeps the
first answer to a key and gives it again, byte for byte, to a later request of the same
caller with the same key, method, path, query and body, with the header
``Idempotent-Replayed: true``; the route does not run a second time, so a notice, an
application, a data request or a vote is made once. The same key with another request
is refused (409 ``conflict``: a key names one request). A key is kept per caller (the
SHA-256 of its ``Authorization`` header, never the token itself) for
:data:`sandbox.api.idempotency.TTL_S`.

An answer is kept unless it is a server error (5xx) or a rate limit (429): those say
"try again", and a retry with the same key runs the request then. Two requests with one
key at once wait for each other (a lock per key file, taken off the event loop), so two
server processes make one object. Not covered: bodies that are not JSON (dataset uploads,
whose repeat is already a no-op as the vault keeps one version per content; PSI chunks
and HE uploads, binary streams answered as they come) and requests without a caller
(refused by the routes anyway).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api.errors import envelope, new_request_id
from sandbox.api.idempotency import HEADER, KEY, TTL_S, sweep_now_and_then

REPLAYED = "Idempotent-Replayed"
OWN_KEYS = {"/v1/jobs"}  # routes that keep their own keys (the job as it is now)
KEEP_BYTES = 1 << 20  # an answer over this is answered, not kept (a retry runs again)
# the replay is the first request's answer: its request id too
KEPT_HEADERS = {b"content-type", b"location", b"link", b"x-request-id"}


class IdempotencyMiddleware:
    """Keeps the first answer to each ``Idempotency-Key`` of a caller and replays it."""

    def __init__(self, app: ASGIApp, home: Path):
        self.app = app
        self.folder = home / "run" / "idempotency"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        key = headers.get(HEADER.lower().encode())
        caller = headers.get(b"authorization")
        if (
            key is None
            or caller is None
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).startswith("/v1/")
            or scope.get("path") in OWN_KEYS
            or not _json_or_empty(headers)
        ):
            await self.app(scope, receive, send)
            return
        rid = scope.setdefault("state", {}).setdefault("request_id", new_request_id())
        text = key.decode("latin-1")
        if not KEY.match(text):
            message = f"header {HEADER} must be 1 to 200 visible ASCII characters, without spaces"
            await envelope("bad_input", message, None, rid)(scope, receive, send)
            return
        body, more = await _read(receive)
        asked = _fingerprint(scope, body)
        path = self._file(caller, text)
        fd = await anyio.to_thread.run_sync(_locked, path)
        try:
            kept = _kept(fd)
            if kept is not None and kept["request"] != asked:
                message = (f"the {HEADER} was used for another request; a key names one "
                           "request: send a new key for a new one")  # fmt: skip
                await envelope("conflict", message, None, rid)(scope, receive, send)
                return
            if kept is not None:
                await _replay(kept, send)
                return
            answer = await self._run(scope, _again(body, more), send)
            if answer is not None:
                _keep(fd, {"request": asked, "at": time.time(), **answer})
        finally:
            os.close(fd)  # closing releases the lock

    def _file(self, caller: bytes, key: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_now_and_then(self.folder)  # keys older than TTL_S go
        who = hashlib.sha256(caller).hexdigest()[:16]
        return self.folder / f"r-{who}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> dict | None:
        """Run the request, passing its answer on; the answer to keep, or None."""
        start: dict = {}
        chunks: list[bytes] = []
        size = 0

        async def taking(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start":
                start.update(status=message["status"], headers=message.get("headers") or [])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= KEEP_BYTES:
                    chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, taking)
        status = int(start.get("status", 500))
        if status >= 500 or status == 429 or size > KEEP_BYTES:
            return None
        kept = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in start["headers"]
                if k.lower() in KEPT_HEADERS]  # fmt: skip
        return {"status": status, "headers": kept,
                "body": base64.b64encode(b"".join(chunks)).decode()}  # fmt: skip


def _json_or_empty(headers: dict[bytes, bytes]) -> bool:
    """A JSON body or none: binary streams (PSI chunks, HE uploads, dataset files) are
    answered as they come, their routes settle a repeat themselves."""
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind in (b"", b"application/json") or kind.endswith(b"+json")


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope.get("method", ""), scope.get("path", ""), scope.get("query_string", b"")):
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body (the body cap outside this middleware bounds it), and any message
    after it (a disconnect) to pass on."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), [message]
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), []


def _again(body: bytes, after: list[Message]) -> Receive:
    """A ``receive`` that gives the route the body read already."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        if after:
            return after.pop(0)
        await anyio.sleep_forever()  # the route never asks twice; a disconnect cancels it
        raise AssertionError("unreachable")

    return receive


def _locked(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _kept(fd: int) -> dict | None:
    size = os.fstat(fd).st_size
    raw = os.pread(fd, size, 0) if size else b""
    if not raw:
        return None
    kept = json.loads(raw)
    return kept if time.time() - kept["at"] < TTL_S else None


def _keep(fd: int, record: dict) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


async def _replay(kept: dict, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept["headers"]]
    headers.append((REPLAYED.lower().encode(), b"true"))
    body = base64.b64decode(kept["body"])
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": kept["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
