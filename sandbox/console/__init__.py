"""The web console: server-rendered pages over the platform's functions (issue 21).

For the people who do not use a shell: checkers, authority staff, operators,
auditors, providers and consumers. Served by ``sandbox serve`` at ``/console`` beside
the API (``/v1``), from FastAPI routes rendering Jinja2 templates, with htmx for small
interactions; every asset ships inside this package (``static/``), none from a CDN.
Simplified Chinese first, English on a switch (:mod:`.i18n`).

An adapter like :mod:`sandbox.api`: each page calls the platform function the API's
route calls (so the same role, jurisdiction and state rules decide), and nothing but
the API's app imports this package (:func:`install`). The plumbing (session cookie,
CSRF, security headers, error pages) is :mod:`.web`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sandbox.console import (
    pages_applications,
    pages_authority,
    pages_checker,
    pages_inspections,
    pages_ledger,
    pages_lineage,
    pages_models,
    pages_notices,
    pages_operator,
    pages_provider,
    pages_session,
)
from sandbox.console.web import HERE, PREFIX, SecurityHeaders

PAGES = (
    pages_session,
    pages_checker,
    pages_operator,
    pages_authority,
    pages_notices,
    pages_applications,
    pages_ledger,
    pages_lineage,
    pages_inspections,
    pages_provider,
    pages_models,
)


def install(app: FastAPI) -> None:
    """Mount the console on the API's app: its pages, its static files, its headers."""
    for module in PAGES:
        app.include_router(module.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_middleware(SecurityHeaders)
