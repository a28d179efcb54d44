"""``Idempotency-Key`` on ``POST /v1/jobs`` (issue 26): a retried submission makes one job.

A client sends a key of its choosing (the Python client a fresh UUID per
``submit_job``, the same on each retry) in the ``Idempotency-Key`` header. The first
request with that key, for that principal, submits the job and records its id; a
later one with the same key and the same body answers that job as it is now (header
``Idempotent-Replayed: true``), and one with a different body is refused (409
``conflict``: a key names one request). Keys are kept per principal for
:data:`TTL_S`; after that the key is new again.

Each key is a small JSON file under the home's ``run/idempotency/`` named by the
principal and the key's SHA-256, locked with ``flock`` while the request runs, so
two server processes (``--workers N``) answering the same key at once make one job:
the second waits for the first and replays it. Files of keys older than
:data:`TTL_S` are removed, at most once an hour per process (:func:`sweep`). Known shortcut: a server killed after
the job is recorded and before the key's file is written leaves the key unknown, and
a retry then makes a second job.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.errors import Conflict, InputError

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600
KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, as HTTP header tokens
SWEEP_EVERY_S = 3600.0
_swept = {"at": 0.0}


@dataclass
class Slot:
    """What a key holds: the job it made, if a request with it already ran."""

    job_id: int | None = None
    replayed: bool = False


def fingerprint(body: Any) -> str:
    """The SHA-256 of a request body's canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def claim(home: Path, principal_id: int, key: str, body: Any) -> Iterator[Slot]:
    """Hold ``key`` of this principal while the request runs; the slot says whether it
    already made a job (replay it) or not (make one and set ``slot.job_id``)."""
    if not KEY.match(key):
        raise InputError(
            f"header {HEADER} must be 1 to 200 visible ASCII characters, without spaces"
        )
    folder = home / "run" / "idempotency"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    sweep_now_and_then(folder)
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    fd = os.open(folder / f"{int(principal_id)}-{name}.json", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 4096, 0)
        kept = json.loads(raw) if raw else None
        asked = fingerprint(body)
        slot = Slot()
        if kept is not None and time.time() - kept["at"] < TTL_S:
            if kept["request"] != asked:
                raise Conflict(
                    f"the {HEADER} was used for another request (job {kept['job']}); "
                    "a key names one request: send a new key for a new job"
                )
            slot = Slot(job_id=int(kept["job"]), replayed=True)
        yield slot
        if not slot.replayed and slot.job_id is not None:
            record = {"job": slot.job_id, "request": asked, "at": time.time()}
            data = json.dumps(record).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
    finally:
        os.close(fd)  # closing releases the lock


def sweep_now_and_then(folder: Path) -> None:
    """:func:`sweep`, at most once per :data:`SWEEP_EVERY_S` in this process."""
    if time.time() - _swept["at"] > SWEEP_EVERY_S:
        _swept["at"] = time.time()
        sweep(folder)


def sweep(folder: Path, now: float | None = None) -> int:
    """Remove the files of keys last used more than :data:`TTL_S` ago; how many."""
    limit = (time.time() if now is None else now) - TTL_S
    removed = 0
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process swept it
            continue
    return removed
