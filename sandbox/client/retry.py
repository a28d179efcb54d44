"""Retries of the Python client: 429 and 503 again after a wait (issue 26).

The platform answers 429 when a principal is over ``api.rate_per_minute`` and 503
while it is not ready; both before any work is done, so the same request may be sent
again, a POST too. The wait is the answer's ``Retry-After`` (seconds, or an HTTP
date) when it has one, else an exponential backoff with jitter: ``backoff_s``, twice
that, four times, ... Nothing waits longer than ``max_wait_s``: an answer that asks
for more is raised at once (a client that must not stall learns it now), and so is the
last answer after ``attempts`` tries. Other errors are never retried.

    from sandbox.client import Client, RetryPolicy
    Client(url, token, retry=RetryPolicy(attempts=6, max_wait_s=60))
    Client(url, token, retry=None)  # no retry: the first 429 is raised
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRIED = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client tries again after a 429 or a 503."""

    attempts: int = 4  # tries in all, the first one included
    backoff_s: float = 0.5  # the first wait when the answer names none
    max_wait_s: float = 30.0  # the longest single wait
    statuses: frozenset[int] = field(default=RETRIED)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1 (1: no retry)")
        if self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError("RetryPolicy.backoff_s and max_wait_s must not be negative")

    def wait_before(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after ``response``; None: no retry."""
        if response.status_code not in self.statuses or attempt >= self.attempts:
            return None
        asked = retry_after(response.headers.get("retry-after"))
        if asked is None:
            base = self.backoff_s * 2 ** (attempt - 1)
            asked = base + random.uniform(0, base / 2)
        return None if asked > self.max_wait_s else asked


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def send(
    request: Callable[[], httpx.Response],
    policy: RetryPolicy | None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """``request()``, again after each retried answer's wait; the last answer."""
    attempt = 1
    while True:
        response = request()
        wait = None if policy is None else policy.wait_before(response, attempt)
        if wait is None:
            return response
        response.close()
        sleep(wait)
        attempt += 1
