"""Principals: tokens shown once and stored only as SHA-256, authentication, roles (Art. 5, 7)."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from policies.errors import AuthError, Conflict, InputError, NotFound, PermissionDenied
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import STORE_NAME
from sandbox.core.principals import Role


def store_bytes(platform) -> bytes:
    """Every byte SQLite holds for the store: the main file and its write-ahead log."""
    files = sorted(platform.home.glob(STORE_NAME + "*"))
    assert platform.home / STORE_NAME in files
    return b"".join(path.read_bytes() for path in files)


def test_token_is_returned_once_and_only_its_digest_is_stored(platform, make_principal):
    principal, token = make_principal("op_one", Role.OPERATOR, org="Analytics Ltd")
    assert token.startswith(principals.TOKEN_PREFIX)
    assert len(token) > 40
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert digest.encode() in store_bytes(platform)  # the digest is there ...
    assert token.encode() not in store_bytes(platform)  # ... the token is not
    secret_part = token[len(principals.TOKEN_PREFIX) :].encode()
    assert secret_part not in store_bytes(platform)
    platform.close()  # checkpoint the log into the main file, then look again
    assert token.encode() not in (platform.home / STORE_NAME).read_bytes()
    assert digest.encode() in (platform.home / STORE_NAME).read_bytes()
    assert principal.org == "Analytics Ltd"


def test_each_principal_gets_a_different_token(make_principal):
    _, first = make_principal("op_a", Role.OPERATOR)
    _, second = make_principal("op_b", Role.OPERATOR)
    assert first != second


def test_authenticate_with_the_token(platform, make_principal):
    principal, token = make_principal("auditor1", Role.AUDITOR)
    with platform.store.read() as conn:
        found = principals.authenticate(conn, token)
        assert found == principal
        assert found.role is Role.AUDITOR
        assert principals.authenticate(conn, f"  {token}\n") == principal  # pasted with spaces


@pytest.mark.parametrize("bad", ["wrong", "sbx_" + "A" * 43, None, ""])
def test_wrong_or_missing_token_is_refused(platform, make_principal, bad):
    _, token = make_principal("auditor1", Role.AUDITOR)
    with platform.store.read() as conn, pytest.raises(AuthError) as err:
        principals.authenticate(conn, bad)
    assert err.value.article == "Art. 7"
    assert token not in str(err.value)


def test_token_of_another_principal_with_one_character_changed_fails(platform, make_principal):
    _, token = make_principal("auditor1", Role.AUDITOR)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with platform.store.read() as conn, pytest.raises(AuthError):
        principals.authenticate(conn, flipped)


def test_deactivated_principal_cannot_authenticate(platform, make_principal):
    principal, token = make_principal("op_gone", Role.OPERATOR)
    con = sqlite3.connect(platform.home / STORE_NAME)
    con.execute("UPDATE principals SET active = 0 WHERE id = ?", (principal.id,))
    con.commit()
    con.close()
    with platform.store.read() as conn, pytest.raises(AuthError, match="not valid"):
        principals.authenticate(conn, token)


@pytest.mark.parametrize("jurisdiction", ["city", "370811"])
def test_authority_with_valid_jurisdiction(platform, make_principal, jurisdiction):
    principal, _ = make_principal("bureau", Role.AUTHORITY, jurisdiction=jurisdiction)
    assert principal.jurisdiction == jurisdiction
    with platform.store.read() as conn:
        assert principals.by_name(conn, "bureau").jurisdiction == jurisdiction


@pytest.mark.parametrize("jurisdiction", [None, "county", "37081", "3708111", "City", "37081x"])
def test_authority_needs_city_or_six_digits(platform, jurisdiction):
    with platform.store.transaction() as conn:
        with pytest.raises(InputError) as err:
            principals.insert(conn, "bureau", Role.AUTHORITY, "Bureau", jurisdiction, now_utc())
        assert err.value.article == "Art. 5"
        assert "city" in str(err.value) and "6-digit" in str(err.value)
    with platform.store.read() as conn, pytest.raises(NotFound):
        principals.by_name(conn, "bureau")


def test_jurisdiction_only_for_authorities(platform):
    with platform.store.transaction() as conn, pytest.raises(InputError, match="authorities only"):
        principals.insert(conn, "op", Role.OPERATOR, "Op", "city", now_utc())


def test_duplicate_name_is_a_conflict(platform, make_principal):
    make_principal("shared_name", Role.OPERATOR)
    with pytest.raises(Conflict, match="'shared_name' exists already"):
        make_principal("shared_name", Role.CONSUMER)
    with platform.store.read() as conn:
        assert principals.by_name(conn, "shared_name").role is Role.OPERATOR


@pytest.mark.parametrize("name", ["", "-lead", "has space", "x" * 101, "名字", "a/b"])
def test_bad_principal_name(platform, name):
    with platform.store.transaction() as conn, pytest.raises(InputError, match="principal name"):
        principals.insert(conn, name, Role.OPERATOR, "Org", None, now_utc())


def test_require_role_names_role_action_and_article(make_principal):
    consumer, _ = make_principal("citizen", Role.CONSUMER)
    with pytest.raises(PermissionDenied) as err:
        principals.require_role(
            consumer, Role.PROVIDER, action="register datasets", article="Art. 14"
        )
    message = str(err.value)
    assert "citizen is a consumer" in message
    assert "only a provider may register datasets" in message
    assert "Art. 14" in message
    assert err.value.article == "Art. 14"
    principals.require_role(consumer, Role.CONSUMER, Role.AUDITOR, action="read")  # allowed


def test_require_role_lists_every_allowed_role(make_principal):
    reviewer, _ = make_principal("rev", Role.REVIEWER)
    with pytest.raises(PermissionDenied, match=r"only an authority or auditor may read the ledger"):
        principals.require_role(reviewer, Role.AUTHORITY, Role.AUDITOR, action="read the ledger")


def test_lookup_by_name_role_and_id(platform, make_principal):
    principal, _ = make_principal("op_one", Role.OPERATOR)
    with platform.store.read() as conn:
        assert principals.by_id(conn, principal.id) == principal
        assert principals.by_name(conn, "op_one", Role.OPERATOR) == principal
        with pytest.raises(InputError, match="is an operator, not a provider"):
            principals.by_name(conn, "op_one", Role.PROVIDER)
        with pytest.raises(NotFound, match="did you mean 'op_one'"):
            principals.by_name(conn, "op_onee")
        with pytest.raises(NotFound):
            principals.by_id(conn, 999)


def test_parse_role(platform):
    assert principals.parse_role(" Provider ") is Role.PROVIDER
    with pytest.raises(InputError, match="did you mean 'operator'"):
        principals.parse_role("operater")


def test_adding_a_principal_is_ledgered_without_the_token(platform, make_principal):
    from sandbox.core import ledger

    _, token = make_principal("op_one", Role.OPERATOR)
    with platform.store.read() as conn:
        entries = ledger.query(conn, action="principal.add")
    assert [e["subject"] for e in entries] == ["principal:op_one"]
    assert token not in repr(entries)
