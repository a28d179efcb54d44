"""Verification keys: one normalisation and one keyed hash, used at index build and call.

A caller's key values and the dataset's key columns must be compared the same
way, so both pass :func:`normalise_key` (trim, full-width to half-width, upper-case
``x`` of ID numbers) before anything else. Known shortcut: ``connectors/normalise.py``
(the PSI issue) did not exist when this was written; this module owns its own copy,
and the index build uses this very function as a DuckDB UDF, so the two sides can
never drift apart.

Key values never reach the ledger or the index: both hold HMAC-SHA256 digests under
a platform secret kept in ``keys/verify.secret`` (0600), created on first use. An
auditor's "who verified this subject?" hashes the supplied key the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from policies.errors import ConfigError, InputError

SECRET_NAME = "verify.secret"
# Stands for "a value none of the subject's rows holds" in the index (see
# policies.verification): it contains a control character, which no normalised
# caller value may contain, so it never collides with a real value.
NO_MATCH = "\x1dno-match"
DIGEST_BYTES = 16  # 128 bits: collisions are out of reach for any plausible index

_FULL_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULL_WIDTH[0x3000] = 0x20  # the ideographic space


def normalise_key(value: str) -> str:
    """Trim, full-width to half-width, upper-case x (GB 11643 check digit X)."""
    text = str(value).translate(_FULL_WIDTH).strip()
    return text.replace("x", "X")


def caller_value(name: str, value: object) -> str:
    """A caller's key value, normalised; refuses empty values and control characters."""
    if not isinstance(value, str):
        raise InputError(f"key '{name}' must be text (ID numbers keep their leading zeros)")
    text = normalise_key(value)
    if not text:
        raise InputError(f"key '{name}' is empty")
    if any(ord(ch) < 0x20 for ch in text) or len(text) > 200:
        raise InputError(f"key '{name}' holds control characters or is over 200 characters")
    return text


def load_secret(key_dir: Path) -> bytes:
    """The platform's verification secret; created (0600) at first use."""
    key_dir = Path(key_dir)
    path = key_dir / SECRET_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        key_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            data = path.read_bytes()
        else:
            data = os.urandom(32)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    if len(data) != 32:
        raise ConfigError(f"the verification secret keys/{SECRET_NAME} is damaged")
    return data


def _digest(secret: bytes, label: str, parts: Sequence[str]) -> bytes:
    message = (label + "\x1e" + "\x1f".join(parts)).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).digest()[:DIGEST_BYTES]


def index_key(secret: bytes, product: str, values: Sequence[str]) -> bytes:
    """The index's key for one product and the normalised values of all its keys."""
    return _digest(secret, "index:" + product, values)


def subject_hash(secret: bytes, values: Sequence[str]) -> str:
    """The subject (its subject-key values only), comparable across products."""
    return _digest(secret, "subject", values).hex()


def subject_hashes(secret: bytes, keys: Iterable[object]) -> list[str]:
    """:func:`subject_hash` of each one-value subject key (normalised), for a whole column:
    the keyed hash prepared once and copied per key, and an ASCII key normalised by two
    string methods (full-width forms are not ASCII). The same hashes, about twice as fast."""
    prepared = hmac.new(secret, b"subject\x1e", hashlib.sha256)
    out = []
    for key in keys:
        text = str(key)
        text = text.strip().replace("x", "X") if text.isascii() else normalise_key(text)
        digest = prepared.copy()
        digest.update(text.encode("utf-8"))
        out.append(digest.digest()[:DIGEST_BYTES].hex())
    return out


def key_hash(secret: bytes, product: str, values: Sequence[str]) -> str:
    """All key values of one call (e.g. ID number and name), for the ledger."""
    return _digest(secret, "call:" + product, values).hex()


def check_hash(secret: bytes, product: str, values: Sequence[str]) -> str:
    """The check-key values alone (e.g. the name), to see many IDs tried for one name."""
    return _digest(secret, "check:" + product, values).hex()


def value_hash(secret: bytes, label: str, value: str) -> str:
    """One value of an input field (``label`` "key": any product's key; "consent": a
    consent reference), the same for every product and field, for the counts per value."""
    return _digest(secret, "value:" + label, [value]).hex()
