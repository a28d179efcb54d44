"""An error answer of the API as the platform's own exception: the envelope's ``code``
picks the class (:data:`sandbox.core.codes.CODES`); the exception carries the HTTP
status and the request id. Used by every part of the client, which also builds its
request bodies here (:func:`body_of`) with the API's own models."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from policies.errors import SandboxError
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


def invalid_request(problems: list[str]) -> SandboxError:
    """The error the API answers (422, ``invalid_request``) for a body that does not fit its
    schema, each problem ``field: what pydantic expected`` (:mod:`sandbox.api.errors`)."""
    message = "the request does not fit the API schema: " + "; ".join(problems[:5])
    return error_from("invalid_request", message, None, status=422)


def body_of(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """A request's JSON body, built with the API's own model of it, so a body the API would
    refuse is refused here, before anything is sent, with the same error and pydantic's
    message (the :class:`pydantic.ValidationError` is its ``__cause__``)."""
    try:
        return model(**fields).model_dump(mode="json")
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'the request'}: {e['msg']}"
            for e in exc.errors()
        ]
        error = invalid_request(problems)
        error.status = 422
        raise error from exc
