"""The application factory: one platform home, one FastAPI app, one executor per process.

``create_app(home)`` builds the app; the platform is opened in the lifespan,
so each uvicorn worker process opens its own store handle, job service and
executor thread (:mod:`.executor`). ``sandbox serve`` starts uvicorn with
:func:`app_from_env`, which reads the home from ``SANDBOX_HOME``, because
uvicorn's worker processes import the app by name.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.api import (
    errors,
    routes_datasets,
    routes_dp,
    routes_evaluations,
    routes_he,
    routes_held,
    routes_inspections,
    routes_jobs,
    routes_ledger,
    routes_models,
    routes_principals,
    routes_products,
    routes_providers,
    routes_psi,
    routes_sources,
    routes_system,
    routes_verify,
    routes_workflow,
)
from sandbox.api.docs_page import install as install_docs
from sandbox.api.errors import REQUEST_ID_HEADER, new_request_id
from sandbox.api.executor import Executor
from sandbox.api.limits import BodyCaps, BodyLimitMiddleware, RateLimiter
from sandbox.api.models import ErrorEnvelope
from sandbox.api.replay import IdempotencyMiddleware
from sandbox.console import install as install_console
from sandbox.core.platform import Platform, default_home
from sandbox.run.execution import JobService

API_VERSION = "1"

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": words}
    for status, words in {
        400: "bad input",
        401: "no or unknown token",
        403: "the role or grant does not allow it",
        404: "no such object (or none you may see)",
        409: "wrong state, or the ledger failed verification",
        413: "body or upload over its cap",
        422: "the request does not fit the schema",
        429: "over the principal's rate limit",
        500: "unexpected server error (no details)",
    }.items()
}


class RequestIdMiddleware:
    """Gives each request an id and returns it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope.setdefault("state", {}).setdefault("request_id", new_request_id())
        header = REQUEST_ID_HEADER.lower().encode()

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(k.lower() == header for k, _ in headers):
                    headers.append((header, rid.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_id)


def create_app(platform_home: Path | str) -> FastAPI:
    home = Path(platform_home)
    # Settings are read here (not only in the lifespan) because the body caps
    # wrap the app before it starts.
    probe = Platform.open(home)
    settings = probe.settings
    probe.close()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = Platform.open(home)
        service = JobService(platform)
        executor = Executor(platform, service)
        app.state.platform = platform
        app.state.service = service
        app.state.executor = executor
        shared = platform.store.engine if platform.store.is_postgres else None  # hosts
        app.state.rate = RateLimiter(settings.api.rate_per_minute, home / "run" / "rate", shared)
        executor.start()
        try:
            yield
        finally:
            app.state.rate.close()
            executor.stop()
            service.close()
            platform.close()

    app = FastAPI(
        title="Jining public-data sandbox",
        version=API_VERSION,
        description="Raw public data goes in; only vetted products come out (Art. 15). "
        'Every error is {"error": {code, message, article, request_id}}.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    routes = (
        routes_system,
        routes_datasets,
        routes_jobs,
        routes_products,
        routes_ledger,
        routes_principals,
        routes_workflow,
        routes_providers,
        routes_evaluations,
        routes_held,
        routes_psi,
        routes_inspections,
        routes_he,
        routes_verify,
        routes_models,
        routes_dp,
        routes_sources,
    )
    for module in routes:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    install_console(app)  # the web console at /console, on the same platform and gates
    install_docs(app)  # /docs: Swagger UI on /openapi.json, served from the package
    app.add_middleware(IdempotencyMiddleware, home=home)  # inside the body caps
    app.add_middleware(
        BodyLimitMiddleware,
        caps=BodyCaps(settings.api.max_body_mb, settings.api.max_upload_mb),
    )
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory: the home comes from ``SANDBOX_HOME`` (set by ``sandbox serve``)."""
    return create_app(Path(os.environ.get("SANDBOX_HOME") or default_home()))
