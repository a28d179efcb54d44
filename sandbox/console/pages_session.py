"""Sign-in, sign-out, the language switch, and each role's first page.

Sign-in takes the principal's token (``sandbox principal add`` printed it) once and
turns it into a session cookie (:func:`sandbox.core.sessions.start`); the token itself
is never kept by the browser. The form carries a one-time token that must equal the one
in a short-lived cookie, so another site cannot sign a browser in to an account of its
choosing.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from policies.errors import AuthError, PermissionDenied
from sandbox.console.i18n import LANGUAGES
from sandbox.console.web import (
    COOKIE,
    HOME,
    LANG_COOKIE,
    PREFIX,
    SIGNIN_COOKIE,
    CurrentSession,
    FormSession,
    clear_cookie,
    console_router,
    local_path,
    redirect,
    render,
    same_token,
    set_cookie,
)
from sandbox.core import sessions

router = console_router()

SIGNIN_FORM_S = 30 * 60
TOKEN_MAX = 200


def _signin_page(request: Request, next_path: str, error: dict | None, status: int = 200):
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"signin_token": token, "next": local_path(next_path), "error": error},
        status=status,
    )
    set_cookie(response, request, SIGNIN_COOKIE, token, max_age=SIGNIN_FORM_S)
    return response


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    return _signin_page(request, next, None)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=TOKEN_MAX)] = "",
    signin: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check the token as the API does; on success set the session cookie."""
    if not same_token(signin, request.cookies.get(SIGNIN_COOKIE, "")):
        refusal = PermissionDenied(
            "the sign-in form carries no valid CSRF token: reload the page (Art. 7)",
            article="Art. 7",
            code="csrf",
        )
        return _signin_page(request, next, refusal.to_dict(), status=403)
    try:
        platform = request.app.state.platform
        hours = platform.settings.api.console_session_hours
        session_id, session = sessions.start(platform, token, hours=hours)
    except AuthError as exc:
        return _signin_page(request, next, exc.to_dict(), status=401)
    target = local_path(next)
    if target == PREFIX + "/":
        target = PREFIX + HOME.get(session.principal.role, "/")
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, request, COOKIE, session_id, max_age=int(hours * 3600))
    clear_cookie(response, request, SIGNIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: FormSession) -> Response:
    sessions.end(request.app.state.platform, request.cookies.get(COOKIE))
    response = redirect("/login")
    clear_cookie(response, request, COOKIE)
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "") -> Response:
    """Chinese first; this switch only sets a cookie and goes back to the page."""
    response = RedirectResponse(local_path(next), status_code=303)
    if code in LANGUAGES:
        set_cookie(response, request, LANG_COOKIE, code, max_age=365 * 24 * 3600)
    return response


@router.get("/")
def home(request: Request, session: CurrentSession) -> Response:
    return redirect(HOME.get(session.principal.role, "/login"))
