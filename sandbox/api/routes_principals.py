"""A principal's lifecycle over HTTP: deactivate, reactivate, rotate its token.

An authority acts on the principals its jurisdiction covers
(:func:`sandbox.core.principals.place_of`: a county authority on its own county's
authorities only, the city authority on everyone); the platform's host does the same
with ``sandbox principal ...`` and no token. Each act is one ledger entry. A
deactivated principal's token, and a rotated token's old value, are refused (401) by
the next request, since every request authenticates against the store
(:mod:`sandbox.api.auth`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import NAME, LifecycleReason, PrincipalStatus, RotatedToken
from sandbox.core.principals import Status, rotate_token, set_status

router = APIRouter(prefix="/v1/principals", tags=["principals"])


@router.post("/{name}/deactivate", response_model=PrincipalStatus)
def principal_deactivate(
    request: Request,
    me: CurrentPrincipal,
    body: LifecycleReason,
    name: str = PathParam(pattern=NAME),
) -> dict:
    """An authority deactivates a principal of its jurisdiction; its token gets 401 at once."""
    return set_status(request.app.state.platform, me, name, Status.DEACTIVATED, body.reason)


@router.post("/{name}/reactivate", response_model=PrincipalStatus)
def principal_reactivate(
    request: Request,
    me: CurrentPrincipal,
    body: LifecycleReason,
    name: str = PathParam(pattern=NAME),
) -> dict:
    """An authority reactivates a deactivated principal of its jurisdiction."""
    return set_status(request.app.state.platform, me, name, Status.ACTIVE, body.reason)


@router.post("/{name}/rotate-token", response_model=RotatedToken)
def principal_rotate_token(
    request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)
) -> dict:
    """An authority gives a principal of its jurisdiction a new token (shown once)."""
    return rotate_token(request.app.state.platform, me, name)
