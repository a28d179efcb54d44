"""Where ``sandbox product verify`` gets the platform's public key (issue 26).

``--key FILE`` reads a PEM file (``keys/platform.pub`` of a home, or a copy);
``--key URL`` fetches it over HTTP(S): the platform's ``GET /v1/keys/platform``
(JSON with ``pem`` and ``fingerprint``) or any address that serves the PEM itself.
Without ``--key``, the key of the ``--server`` (or ``SANDBOX_SERVER``) when one is
given, else the key of ``--home``, as before. ``--fingerprint`` pins
the key: a fetched key whose SHA-256 fingerprint differs is refused, so a key from
the same host as the product can be checked against one published elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import ConfigError, IntegrityError
from sandbox.core.keys import fingerprint, load_public, parse_public

KEY_ROUTE = "/v1/keys/platform"
TIMEOUT_S = 10.0
MAX_KEY_BYTES = 64 * 1024


def _fetch(url: str) -> bytes:
    import httpx

    try:
        answer = httpx.get(url, timeout=TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ConfigError(f"--key {url}: the address does not answer ({exc})") from None
    if answer.status_code != 200:
        raise ConfigError(
            f"--key {url}: the address answered HTTP {answer.status_code}; the platform "
            f"serves its key at {KEY_ROUTE}"
        )
    body = answer.content[: MAX_KEY_BYTES + 1]
    if len(body) > MAX_KEY_BYTES:
        raise ConfigError(f"--key {url}: the answer is larger than a public key")
    if answer.headers.get("content-type", "").startswith("application/json"):
        try:
            return str(json.loads(body)["pem"]).encode("ascii")
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"--key {url}: the JSON answer has no 'pem' field") from None
    return body


def public_key_from(
    source: str | None, home: Path, pinned: str | None = None, server: str | None = None
) -> tuple[Ed25519PublicKey, str]:
    """The public key named by ``--key`` (a file or an http(s) URL; without it, the
    server's with ``--server``, else the home's) and its fingerprint, checked against
    ``pinned`` when given."""
    if source is None and server:
        source = server.rstrip("/") + KEY_ROUTE
    if source is None:
        if not (home / "keys" / "platform.pub").exists():
            raise ConfigError(
                f"no platform key in the home {home} (keys/platform.pub); off the host, "
                f"give the key with --key FILE or --key https://HOST{KEY_ROUTE}"
            )
        public = load_public(home / "keys" / "platform.pub")
    elif source.startswith(("http://", "https://")):
        public = parse_public(_fetch(source), f"--key {source}")
    else:
        public = load_public(Path(source))
    found = fingerprint(public)
    if pinned is not None and pinned.strip().lower() not in (found, found.removeprefix("sha256:")):
        raise IntegrityError(
            f"the key's fingerprint is {found}, not the one given with --fingerprint ({pinned})"
        )
    return public, found
