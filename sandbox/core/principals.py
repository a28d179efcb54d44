"""Principals, their roles and their tokens.

A principal is a person or organisation account with exactly one role
(README, "Guides by role"). ``sandbox principal add`` prints its bearer token
once; only the token's SHA-256 is stored, and a presented token is compared
with :func:`hmac.compare_digest`. An authority carries a jurisdiction: ``city``
or one county code (Art. 5).
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

from policies.classes import did_you_mean
from policies.errors import AuthError, Conflict, InputError, NotFound, PermissionDenied
from sandbox.core.ledger import Actor
from sandbox.core.store import inserted_id, principals

TOKEN_PREFIX = "sbx_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
COUNTY_PATTERN = re.compile(r"^\d{6}$")


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
    digest = token_digest(token.strip())
    row = conn.execute(select(principals).where(principals.c.token_sha256 == digest)).first()
    if row is None or not hmac.compare_digest(row.token_sha256, digest) or not row.active:
        raise AuthError(
            "the token is not valid for any active principal (Art. 7)", article="Art. 7"
        )
    return _from_row(row)


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
    from sandbox.core.ledger import SYSTEM, now_utc

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
