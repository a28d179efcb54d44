"""Liveness, readiness, "who am I" and the platform's public key: what a load balancer,
a new client and a verifier off the host ask first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from policies.errors import NotReady
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import Health, Me
from sandbox.core.keys import fingerprint, public_pem, sign
from sandbox.core.keys import verify as verify_signature
from sandbox.core.store import ledger_head

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["system"])
async def healthz() -> Health:
    """The process is up (no store access, no token)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, tags=["system"])
def readyz(request: Request) -> Health:
    """The store answers, the signing key signs, and the job executor runs."""
    state = request.app.state
    platform = getattr(state, "platform", None)
    if platform is None:
        raise NotReady("the platform is not open yet")
    try:
        with platform.store.read() as conn:
            conn.execute(select(ledger_head.c.seq)).first()
    except Exception as exc:
        raise NotReady("the platform store does not answer") from exc
    probe = b"readyz"
    try:
        verify_signature(platform.key.public_key(), probe, sign(platform.key, probe), "readyz")
    except Exception as exc:
        raise NotReady("the platform signing key is not usable") from exc
    if not state.executor.running:
        raise NotReady("the job executor is not running")
    return Health(status="ready")


@router.get("/v1/me", response_model=Me, tags=["system"])
def me(principal: CurrentPrincipal) -> Me:
    """The principal the token belongs to."""
    return Me(
        id=principal.id,
        name=principal.name,
        role=principal.role.value,
        org=principal.org,
        jurisdiction=principal.jurisdiction,
    )


class PlatformKey(BaseModel):
    """The platform's public signing key."""

    algorithm: str
    pem: str
    fingerprint: str


@router.get("/v1/keys/platform", response_model=PlatformKey, tags=["system"])
def platform_key(request: Request) -> PlatformKey:
    """The platform's Ed25519 public key (PEM) and its SHA-256 fingerprint; no token needed.

    Public by design: it verifies product manifests and ledger checkpoints, and whoever
    holds a product (a consumer, a court) may verify it without an account. Compare the
    fingerprint with one published out of band before trusting a key fetched here.
    Example: ``sandbox product verify prod-000001 --key https://host/v1/keys/platform``.
    """
    platform = getattr(request.app.state, "platform", None)
    if platform is None:
        raise NotReady("the platform is not open yet")
    public = platform.key.public_key()
    return PlatformKey(algorithm="Ed25519", pem=public_pem(public), fingerprint=fingerprint(public))
