"""An error answer of the API as the platform's own exception: the envelope's ``code``
picks the class (:data:`sandbox.core.codes.CODES`); the exception carries the HTTP
status and the request id. Used by every part of the client."""

from __future__ import annotations

import httpx

from sandbox.core.codes import InternalError, error_from


def raise_for_envelope(response: httpx.Response) -> None:
    """Raise the exception the envelope names; a body without one is an InternalError."""
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        error = error_from(
            body["code"],
            body["message"],
            body.get("article"),
            body.get("rule"),
            body.get("subject"),
            response.status_code,
        )
        request_id = body.get("request_id")
    except (ValueError, KeyError, TypeError):
        error = InternalError(f"the server answered {response.status_code} without an error body")
        request_id = response.headers.get("x-request-id")
    error.status = response.status_code
    error.request_id = request_id
    raise error
