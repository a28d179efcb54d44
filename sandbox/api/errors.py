"""One JSON envelope for every error the API returns.

``{"error": {"code", "message", "article", "request_id"}}`` (a policy refusal adds
``rule`` and ``subject``): our exceptions
(their code decides the status, :mod:`sandbox.core.codes`), FastAPI's validation errors
(422, naming the field but never echoing its value), unknown routes (404),
wrong methods (405), a full disk met anywhere (507, ``disk_full``, even when it
surfaced as a library's error) and anything unexpected (500, ``internal_error``, no
traceback: the traceback goes to the server's log with the request id, so an
operator of the platform can find it). Every response carries ``X-Request-ID``.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from policies.errors import SandboxError
from sandbox.core import storage
from sandbox.core.codes import status_for, status_of

log = logging.getLogger("sandbox.api")

REQUEST_ID_HEADER = "X-Request-ID"


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = new_request_id()
    return rid


def envelope(
    code: str,
    message: str,
    article: str | None,
    request_id: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    rule: str | None = None,
    subject: str | None = None,
) -> JSONResponse:
    error = {"code": code, "message": message, "article": article, "request_id": request_id}
    if rule:  # a policy refusal also names its rule and what it is about
        error.update(rule=rule, subject=subject)
    body = {"error": error}
    return JSONResponse(
        body,
        status_code=status or status_of(code),
        headers={REQUEST_ID_HEADER: request_id, **(headers or {})},
    )


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "the request"


async def _sandbox_error(request: Request, exc: SandboxError) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.code == "unauthenticated":
        headers["WWW-Authenticate"] = "Bearer"
    return envelope(
        exc.code,
        exc.message,
        exc.article,
        request_id_of(request),
        status=status_for(exc),
        headers=headers,
        rule=getattr(exc, "rule", None),
        subject=getattr(exc, "subject", None),
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors()[:5]:
        # Pydantic's message names the expectation; the input value is never echoed.
        problems.append(f"{_field(err.get('loc', ()))}: {err.get('msg', 'invalid')}")
    message = "the request does not fit the API schema: " + "; ".join(problems)
    return envelope("invalid_request", message, None, request_id_of(request), status=422)


_HTTP_CODES = {
    400: "bad_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc.__cause__, SandboxError):
        # FastAPI wraps errors raised while reading the body (our body cap) in a 400.
        return await _sandbox_error(request, exc.__cause__)
    code = _HTTP_CODES.get(
        exc.status_code, "bad_input" if exc.status_code < 500 else "internal_error"
    )
    if exc.status_code == 404:
        message = (
            f"no route {request.url.path}; the API's routes are listed at /openapi.json "
            "and shown at /docs"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif exc.status_code >= 500:
        message = "the server failed; nothing was changed by this request"
    else:
        message = str(exc.detail)
    return envelope(code, message, None, request_id_of(request), status=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id_of(request)
    if storage.is_disk_full(exc):
        # A write of the store or of a file met a full disk: the transaction was rolled
        # back and its files removed by their writers, so the answer is disk_full (507).
        log.warning("request %s: the disk is full (%s)", rid, type(exc).__name__)
        return await _sandbox_error(request, storage.disk_full("this request's change"))
    log.error("request %s failed: %s", rid, type(exc).__name__, exc_info=exc)
    return envelope(
        "internal_error",
        f"the server failed while answering; quote request id {rid} to the platform's host",
        None,
        rid,
        status=500,
    )


def install(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception, so one written for a subclass
    # does not match (Kludex/starlette#2417); it is only called with its own class.
    app.add_exception_handler(SandboxError, _sandbox_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
