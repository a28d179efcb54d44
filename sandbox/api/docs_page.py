"""The API's documentation page, ``/docs``: Swagger UI over ``/openapi.json``.

Everything the page loads is served by the platform from inside the package
(``static/``: Swagger UI 5's bundle and styles, unchanged, with their licence, and
the few lines that start it); nothing comes from a CDN, so the page works on a host
without internet, as the platform's hosts are. The page runs under a
Content-Security-Policy that allows scripts and styles from the platform only; its
"Try it out" calls go to the same host with the reader's own token (the Authorize
button), and are gated, rate-limited and ledgered like any other call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/docs"
# Swagger UI sets a few styles inline on its elements, and shows its logo as a data: URL.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} — API</title>
<link rel="stylesheet" href="{prefix}/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{prefix}/static/swagger-ui-bundle.js"></script>
<script src="{prefix}/static/docs.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """``GET /docs`` and its files under ``/docs/static``."""
    page = PAGE.format(title=app.title, prefix=PREFIX)

    @app.get(PREFIX, include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI on this API's OpenAPI document."""
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="api-docs-static")
