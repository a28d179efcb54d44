"""Principals, their roles and their tokens.

A principal is a person or organisation account with exactly one role
(README, "Guides by role"). ``sandbox principal add`` prints its bearer token
once; only the token's SHA-256 is stored, and a presented token is compared
with :func:`hmac.compare_digest`. An authority carries a jurisdiction: ``city``
or one county code (Art. 5).

A principal is ``active`` or ``deactivated`` (its lifecycle, :func:`set_status`);
its token can be replaced (:func:`rotate_token`). Both take effect at once: every
request authenticates its token against the store (:func:`authenticate`), the API's
on every call and the host's command line once per command, and nothing keeps an
authenticated principal between requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import AuthError, Conflict, InputError, NotFound, PermissionDenied
from policies.suggest import did_you_mean
from policies.workflow import check_jurisdiction
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.store import inserted_id, principals, sessions

TOKEN_PREFIX = "sbx_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
COUNTY_PATTERN = re.compile(r"^\d{6}$")


class Status(StrEnum):
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class Role(StrEnum):
    PROVIDER = "provider"
    AUTHORITY = "authority"
    REVIEWER = "reviewer"
    OPERATOR = "operator"
    CONSUMER = "consumer"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    id: int
    name: str
    role: Role
    org: str
    jurisdiction: str | None

    @property
    def actor(self) -> Actor:
        return Actor(self.name, self.role.value, self.id)


def _a(word: str) -> str:
    """'a provider', 'an operator': roles are named in user-facing messages."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InputError(
            f"unknown role '{value}'; " + did_you_mean(value, [r.value for r in Role])
        ) from None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _from_row(row) -> Principal:
    return Principal(row.id, row.name, Role(row.role), row.org, row.jurisdiction)


def validate_new(conn: Connection, name: str, role: Role, jurisdiction: str | None) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise InputError(
            f"principal name '{name}': use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if role is Role.AUTHORITY:
        if jurisdiction is None:
            raise InputError(
                "an authority needs --jurisdiction: 'city' or a 6-digit county code (Art. 5)",
                article="Art. 5",
            )
        if jurisdiction != "city" and not COUNTY_PATTERN.match(jurisdiction):
            raise InputError(
                f"jurisdiction '{jurisdiction}': must be 'city' or a 6-digit county code (Art. 5)",
                article="Art. 5",
            )
    elif jurisdiction is not None:
        raise InputError("--jurisdiction applies to authorities only (Art. 5)", article="Art. 5")
    if conn.execute(select(principals.c.id).where(principals.c.name == name)).first():
        raise Conflict(f"a principal named '{name}' exists already; choose another name")


def insert(
    conn: Connection, name: str, role: Role, org: str, jurisdiction: str | None, created_at: str
) -> tuple[Principal, str]:
    """Create the principal; return it with its token (shown once, never stored)."""
    validate_new(conn, name, role, jurisdiction)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    result = conn.execute(
        principals.insert().values(
            name=name,
            role=role.value,
            org=org or name,
            jurisdiction=jurisdiction,
            token_sha256=token_digest(token),
            active=True,
            status=Status.ACTIVE.value,
            created_at=created_at,
        )
    )
    principal = Principal(inserted_id(result), name, role, org or name, jurisdiction)
    return principal, token


def authenticate(conn: Connection, token: str | None) -> Principal:
    if not token:
        raise AuthError(
            "no token given: pass --as TOKEN, or set SANDBOX_TOKEN or SANDBOX_TOKEN_FILE (Art. 7)",
            article="Art. 7",
        )
    return authenticate_digest(conn, token_digest(token.strip()))


def authenticate_digest(conn: Connection, digest: str) -> Principal:
    """The active principal whose token has this SHA-256 (a console session keeps the
    digest its token had at sign-in, :mod:`sandbox.core.sessions`)."""
    row = conn.execute(select(principals).where(principals.c.token_sha256 == digest)).first()
    if row is None or not hmac.compare_digest(row.token_sha256, digest) or not _is_active(row):
        raise AuthError(
            "the token is not valid for any active principal (Art. 7)", article="Art. 7"
        )
    return _from_row(row)


def _is_active(row) -> bool:
    return bool(row.active) and row.status == Status.ACTIVE.value


def require_active(conn: Connection, principal_id: int) -> None:
    """Refuse, as an unknown token is refused, a principal deactivated since it was
    authenticated: work begun for it earlier (a queued job) stops here."""
    row = conn.execute(select(principals).where(principals.c.id == principal_id)).first()
    if row is None or not _is_active(row):
        raise AuthError(
            "the principal is no longer active: its token is not valid (Art. 7)", article="Art. 7"
        )


def by_name(conn: Connection, name: str, role: Role | None = None) -> Principal:
    row = conn.execute(select(principals).where(principals.c.name == name)).first()
    if row is None:
        known = [r.name for r in conn.execute(select(principals.c.name))]
        raise NotFound(f"no principal named '{name}'; " + did_you_mean(name, known))
    principal = _from_row(row)
    if role is not None and principal.role is not role:
        raise InputError(f"principal '{name}' is {_a(principal.role.value)}, not {_a(role.value)}")
    return principal


def by_id(conn: Connection, principal_id: int) -> Principal:
    row = conn.execute(select(principals).where(principals.c.id == principal_id)).first()
    if row is None:
        raise NotFound(f"no principal with id {principal_id}")
    return _from_row(row)


def require_role(principal: Principal, *roles: Role, action: str, article: str = "Art. 7") -> None:
    if principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDenied(
            f"{principal.name} is {_a(principal.role.value)}; only {_a(allowed)} may {action} "
            f"({article})",
            article=article,
        )


def add_principal(
    platform, name: str, role: Role, org: str = "", jurisdiction: str | None = None
) -> tuple[Principal, str]:
    """Create a principal on the platform's host (``sandbox principal add``), ledgered.

    The platform itself is the actor (Art. 5: accounts are issued by the platform's
    operator); returns the principal and its token, which is shown once.
    """
    from sandbox.core.ledger import SYSTEM

    with platform.store.transaction() as conn:
        principal, token = insert(conn, name, role, org, jurisdiction, now_utc())
        platform.record(
            conn,
            SYSTEM,
            "principal.add",
            f"principal:{name}",
            {"role": role.value, "org": principal.org, "jurisdiction": jurisdiction},
            "Art. 5",
        )
    return principal, token


# --- lifecycle: deactivate, reactivate, rotate the token --------------------------------------

REASON_MAX = 2000
CITY = "city"


def place_of(principal: Principal) -> str:
    """The jurisdiction a principal's account belongs to (Art. 5): an authority's own;
    ``city`` for every other role, whose account spans the city (an operator may hold
    agreements of several counties, a provider's datasets are the city's registry)."""
    if principal.role is Role.AUTHORITY and principal.jurisdiction:
        return principal.jurisdiction
    return CITY


def _acting(conn: Connection, actor: Principal | None, target: Principal, action: str) -> Actor:
    """Who acts on ``target``: the platform's host (``actor`` None) may act on every
    principal; an authority, still active now, on those its jurisdiction covers."""
    from sandbox.core.ledger import SYSTEM

    if actor is None:
        return SYSTEM
    require_active(conn, actor.id)
    require_role(actor, Role.AUTHORITY, action=action, article="Art. 5")
    check_jurisdiction(actor.name, actor.jurisdiction, place_of(target))
    return actor.actor


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InputError("give a --reason: it is written to the ledger (Art. 7)", article="Art. 7")
    if len(text) > REASON_MAX:
        raise InputError(f"the reason is {len(text)} characters long; at most {REASON_MAX}")
    return text


def _target(conn: Connection, name: str):
    row = conn.execute(select(principals).where(principals.c.name == name)).first()
    if row is None:
        by_name(conn, name)  # raises NotFound, naming the nearest names
    return row


def _status_of(row) -> Status:
    return Status.ACTIVE if _is_active(row) else Status.DEACTIVATED


def status_dict(principal: Principal, status: Status) -> dict:
    return {
        "name": principal.name,
        "role": principal.role.value,
        "jurisdiction": principal.jurisdiction,
        "status": status.value,
    }


def set_status(platform, actor: Principal | None, name: str, status: Status, reason: str) -> dict:
    """Deactivate or reactivate ``name``, ledgered with the reason; ``actor`` None is the
    platform's host. From the commit on, the principal's token is refused (401) or
    accepted again everywhere; a deactivation also ends its console sessions, which a
    reactivation does not bring back. Nobody deactivates the last active city authority."""
    text = _reason(reason)
    verb = "deactivate" if status is Status.DEACTIVATED else "reactivate"
    with platform.store.transaction() as conn:
        row = _target(conn, name)
        target = _from_row(row)
        who = _acting(conn, actor, target, f"{verb} principals")
        if _status_of(row) is status:
            raise Conflict(f"principal '{name}' is {status.value} already")
        if status is Status.DEACTIVATED and _last_city_authority(conn, target):
            raise Conflict(
                f"'{name}' is the last active city authority; add or reactivate another "
                "city authority first, so that someone can still act for the city (Art. 5)",
                article="Art. 5",
            )
        conn.execute(
            principals.update()
            .where(principals.c.id == target.id)
            .values(status=status.value, active=status is Status.ACTIVE)
        )
        if status is Status.DEACTIVATED:  # its console sessions end for good (Art. 7)
            conn.execute(
                sessions.update()
                .where(sessions.c.principal_id == target.id, sessions.c.ended_at.is_(None))
                .values(ended_at=now_utc())
            )
        platform.record(
            conn,
            who,
            f"principal.{verb}",
            f"principal:{name}",
            {
                "role": target.role.value,
                "jurisdiction": target.jurisdiction,
                "reason": text,
            },
            "Art. 5",
        )
    return status_dict(target, status)


def _last_city_authority(conn: Connection, target: Principal) -> bool:
    if target.role is not Role.AUTHORITY or target.jurisdiction != CITY:
        return False
    others = conn.execute(
        select(principals.c.id).where(
            principals.c.role == Role.AUTHORITY.value,
            principals.c.jurisdiction == CITY,
            principals.c.status == Status.ACTIVE.value,
            principals.c.active.is_(True),
            principals.c.id != target.id,
        )
    ).first()
    return others is None


def rotate_token(platform, actor: Principal | None, name: str) -> dict:
    """Give ``name`` a new token and return it (shown once, like ``principal add``);
    the old one is refused from the commit on. The ledger names the act, never the
    token or its hash. A deactivated principal's token may be rotated too (it stays
    unusable until it is reactivated)."""
    with platform.store.transaction() as conn:
        row = _target(conn, name)
        target = _from_row(row)
        who = _acting(conn, actor, target, "rotate tokens")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        conn.execute(
            principals.update()
            .where(principals.c.id == target.id)
            .values(token_sha256=token_digest(token))
        )
        platform.record(
            conn,
            who,
            "principal.rotate_token",
            f"principal:{name}",
            {"role": target.role.value, "jurisdiction": target.jurisdiction},
            "Art. 5",
        )
    return {**status_dict(target, _status_of(row)), "token": token}
