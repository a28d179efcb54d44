"""Console sessions: a principal's token exchanged once for a browser session (issue 21).

The console (``sandbox.console``) signs a person in with the principal's token, checked
by :func:`sandbox.core.principals.authenticate` (the API's and the CLI's check), and
gives the browser a random session id in a cookie. The store keeps only the id's
SHA-256, the principal, the digest of the token the session was opened with, the CSRF
token of the session's forms, and when the session ends. Nothing is kept in the server's
memory, so every worker process reads the same sessions.

Every request checks its session again against the store (:func:`session_of`): an
ended or expired session, a deactivated principal and a rotated token are refused as an
unknown token is (401), at once. Sign-in and sign-out are ledger entries (Art. 7).
A session lasts ``api.console_session_hours`` (:func:`start`'s ``hours``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import AuthError
from sandbox.core.principals import Principal, authenticate, authenticate_digest, token_digest
from sandbox.core.store import sessions

ARTICLE = "Art. 7"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, the CSRF token its forms carry, and when it ends."""

    principal: Principal
    csrf: str
    expires_at: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _ended(message: str = "") -> AuthError:
    return AuthError(
        message or "the console session has ended or is not valid: sign in again (Art. 7)",
        article=ARTICLE,
    )


def start(platform, token: str, *, hours: float) -> tuple[str, Session]:
    """Open a session for the principal of ``token``; returns the cookie's id and the session.

    The token is checked as the API checks a bearer token; only digests are stored.
    """
    now = datetime.now(UTC)
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = (now + timedelta(hours=hours)).isoformat()
    with platform.store.transaction() as conn:
        principal = authenticate(conn, token)
        conn.execute(
            sessions.insert().values(
                id_sha256=_digest(session_id),
                principal_id=principal.id,
                token_sha256=token_digest(token.strip()),
                csrf=csrf,
                created_at=now.isoformat(),
                expires_at=expires,
            )
        )
        platform.record(
            conn,
            principal.actor,
            "session.start",
            f"principal:{principal.name}",
            {"channel": "console", "expires_at": expires},
            ARTICLE,
        )
    return session_id, Session(principal, csrf, expires)


def session_of(conn: Connection, session_id: str | None) -> Session:
    """The live session of this cookie value, or 401: ended, expired, unknown, or its
    principal deactivated or given a new token since the sign-in."""
    if not session_id:
        raise _ended("not signed in: sign in with your token (Art. 7)")
    digest = _digest(session_id)
    row = conn.execute(select(sessions).where(sessions.c.id_sha256 == digest)).first()
    if row is None or not hmac.compare_digest(row.id_sha256, digest) or row.ended_at:
        raise _ended()
    if datetime.fromisoformat(row.expires_at) <= datetime.now(UTC):
        raise _ended("the console session has expired: sign in again (Art. 7)")
    try:
        principal = authenticate_digest(conn, row.token_sha256)
    except AuthError:
        raise _ended(
            "the principal of this session is no longer active or has a new token: "
            "sign in again (Art. 7)"
        ) from None
    if principal.id != row.principal_id:
        raise _ended()
    return Session(principal, row.csrf, row.expires_at)


def end(platform, session_id: str | None) -> bool:
    """Sign out: the session ends now (a copy of its cookie is refused from the commit on).
    Returns whether a live session was ended."""
    if not session_id:
        return False
    now = datetime.now(UTC).isoformat()
    with platform.store.transaction() as conn:
        try:
            session = session_of(conn, session_id)
        except AuthError:
            return False
        conn.execute(
            sessions.update()
            .where(sessions.c.id_sha256 == _digest(session_id))
            .values(ended_at=now)
        )
        platform.record(
            conn,
            session.principal.actor,
            "session.end",
            f"principal:{session.principal.name}",
            {"channel": "console"},
            ARTICLE,
        )
    return True
