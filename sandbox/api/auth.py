"""Bearer tokens: who is calling.

The token of ``Authorization: Bearer <token>`` is checked by
:func:`sandbox.core.principals.authenticate`, the same function the CLI uses (it
compares digests in constant time and refuses inactive principals). A missing
or unknown token is 401 with the envelope; then the principal's rate bucket is
charged (:mod:`.limits`). Role and grant checks stay in the platform functions
each route calls, so the API and the CLI share one policy.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from policies.errors import AuthError
from sandbox.core.principals import Principal, authenticate

bearer = HTTPBearer(auto_error=False, description="a token from 'sandbox principal add'")


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError(
            "no bearer token: send 'Authorization: Bearer TOKEN' (Art. 7)", article="Art. 7"
        )
    platform = request.app.state.platform
    with platform.store.read() as conn:
        principal = authenticate(conn, credentials.credentials)
    request.app.state.rate.take(principal.id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
