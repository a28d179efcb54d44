"""The platform's Ed25519 signing key.

Created by ``sandbox init`` in ``keys/platform.key`` (file mode 0600); its public
half is ``keys/platform.pub`` (PEM), which anyone may hold to verify ledger
checkpoints and product manifests: the API serves it to anyone at
``GET /v1/keys/platform`` with its :func:`fingerprint`, and ``sandbox product
verify --key FILE|URL`` reads it from a file or that address. The private key never
leaves the platform home and is never handed to a job worker.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.errors import ConfigError, IntegrityError

PRIVATE_NAME = "platform.key"
PUBLIC_NAME = "platform.pub"


def create_key(key_dir: Path) -> Ed25519PublicKey:
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    private_path = key_dir / PRIVATE_NAME
    if private_path.exists():
        return load_private(key_dir).public_key()
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    public = key.public_key()
    (key_dir / PUBLIC_NAME).write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def load_private(key_dir: Path) -> Ed25519PrivateKey:
    path = key_dir / PRIVATE_NAME
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError("the platform signing key is missing; run 'sandbox init'") from None
    except ValueError as exc:
        raise ConfigError("the platform signing key file is damaged") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the platform signing key is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"public key file {Path(path).name} not found") from None
    return parse_public(data, Path(path).name)


def parse_public(data: bytes, what: str) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM ``data``; ``what`` names its source in the error."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what} is not an Ed25519 public key")
    return key


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM text (SubjectPublicKeyInfo), as ``keys/platform.pub`` holds it."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(public: Ed25519PublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the key's DER SubjectPublicKeyInfo.

    The same as ``openssl pkey -pubin -in platform.pub -outform DER | sha256sum``, so a
    verifier can compare it with one published elsewhere.
    """
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return key.sign(message).hex()


def verify(public: Ed25519PublicKey, message: bytes, signature_hex: str, what: str) -> None:
    try:
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"{what}: the signature does not match the platform key") from None
