"""The console's plumbing: the session cookie, CSRF, security headers, pages and errors.

* **Who is calling.** :func:`current_session` reads the session cookie and checks it
  against the store on every request (:func:`sandbox.core.sessions.session_of`: an
  ended session, a deactivated principal or a rotated token is refused at once), then
  charges the principal's rate bucket, as the API's bearer check does
  (:mod:`sandbox.api.auth`). What the principal may do is decided by the platform
  functions each page calls, the ones the API routes call: no second set of rules.
* **Cookies.** ``HttpOnly``, ``SameSite=Strict``, path ``/console``, and ``Secure``
  when the request came over https (behind a proxy, uvicorn's ``--proxy-headers``).
* **CSRF.** Every form carries the session's CSRF token (hidden field ``csrf``, or the
  ``X-CSRF-Token`` header); :func:`checked_form` refuses a POST without it (403,
  ``csrf``). The sign-in form, which has no session yet, carries a token that must
  equal the one in a short-lived cookie (double submit).
* **Headers.** :class:`SecurityHeaders` gives every console response a strict
  Content-Security-Policy (scripts and styles only from the console's own static files,
  no inline script), ``nosniff``, no framing, no referrer, and no caching of pages.
* **Errors.** :class:`ConsoleRoute` turns our exceptions into a page (or, for htmx, a
  fragment) that shows the message, the rule and the article where the action was
  tried; a missing or ended session goes to the sign-in page.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies.errors import AuthError, InvalidRequest, PermissionDenied, SandboxError
from sandbox.console.i18n import LANGUAGES, translator
from sandbox.core.codes import status_for
from sandbox.core.principals import Role
from sandbox.core.sessions import Session, session_of

PREFIX = "/console"
COOKIE = "sbx_session"
SIGNIN_COOKIE = "sbx_signin"  # the sign-in form's CSRF token (no session yet)
LANG_COOKIE = "sbx_lang"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
HERE = Path(__file__).resolve().parent
MAX_ID = 2**53  # the largest id a page's address takes, as the API's routes take it

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A chart is an SVG image of its own: matplotlib writes its styles inline, and an image
# runs no script, so its response allows inline styles and nothing else.
CSP_SVG = "default-src 'none'; style-src 'unsafe-inline'"

templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html

# Each role's first page after sign-in, and the pages its menu lists.
HOME = {
    Role.REVIEWER: "/reviews",
    Role.AUTHORITY: "/inbox",
    Role.OPERATOR: "/jobs",
    Role.AUDITOR: "/ledger",
    Role.PROVIDER: "/datasets",
    Role.CONSUMER: "/products",
}
MENU = {
    Role.REVIEWER: ("reviews", "applications"),
    Role.AUTHORITY: (
        "inbox",
        "notices",
        "reviews",
        "agreements",
        "inspections",
        "ledger",
        "lineage",
        "models",
    ),
    Role.OPERATOR: ("jobs", "products", "models", "notices", "inspections"),
    Role.AUDITOR: ("ledger", "reviews", "jobs", "products", "models", "lineage", "inspections"),
    Role.PROVIDER: ("datasets", "inbox", "inspections"),
    Role.CONSUMER: ("products", "inbox"),
}


def language(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "")
    return lang if lang in LANGUAGES else LANGUAGES[0]


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite="strict", secure=is_https(request)
    )


def current_session(request: Request) -> Session:
    """The signed-in principal of this request (401 ``unauthenticated`` otherwise)."""
    platform = request.app.state.platform
    with platform.store.read() as conn:
        session = session_of(conn, request.cookies.get(COOKIE))
    request.app.state.rate.take(session.principal.id)
    request.state.session = session
    return session


CurrentSession = Annotated[Session, Depends(current_session)]


def same_token(sent: Any, expected: str) -> bool:
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(sent, expected)


async def checked_form(request: Request, session: CurrentSession) -> Session:
    """The session of a POST whose form (or header) carries the session's CSRF token."""
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not same_token(sent, session.csrf):
        raise PermissionDenied(
            "the form carries no valid CSRF token: reload the page and send it again (Art. 7)",
            article="Art. 7",
            code="csrf",
        )
    return session


FormSession = Annotated[Session, Depends(checked_form)]


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A page (or fragment) in the request's language, with the session's menu and token."""
    session: Session | None = getattr(request.state, "session", None)
    lang = language(request)
    role = session.principal.role if session else None
    ctx = {
        "t": translator(lang),
        "lang": lang,
        "languages": LANGUAGES,
        "session": session,
        "me": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "menu": MENU.get(role, ()) if role else (),
        "prefix": PREFIX,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, ctx, status_code=status)


def redirect(path: str) -> RedirectResponse:
    """303 to a console path (after a POST, the browser GETs the page again)."""
    return RedirectResponse(PREFIX + path, status_code=303)


def local_path(value: str | None) -> str:
    """A ``next`` target inside the console, never another site nor a page outside the
    console: a path under ``/console/`` with no backslash, control character, ``//`` or
    dot segment (``..`` would climb out, percent-encoded too), else the console's root."""
    if not value or not value.startswith(PREFIX + "/") or "://" in value:
        return PREFIX + "/"
    path = unquote(value.split("?", 1)[0])
    segments = path.split("/")
    if "//" in path or "." in segments or ".." in segments or any(c in value for c in "\\\t\r\n"):
        return PREFIX + "/"
    return value


def error_page(request: Request, exc: SandboxError) -> Response:
    """The refusal or error, shown where the action was tried: message, rule, article."""
    if isinstance(exc, AuthError):
        return signin_redirect(request, exc)
    context = {"error": exc.to_dict(), "title_key": "error.title"}
    template = "error_fragment.html" if request.headers.get("hx-request") else "error.html"
    return render(request, template, context, status=status_for(exc))


def signin_redirect(request: Request, exc: AuthError) -> Response:
    target = quote(request.url.path, safe="/")
    response: Response
    if request.headers.get("hx-request"):
        response = Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/login"})
    else:
        response = RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
    if request.cookies.get(COOKIE):
        clear_cookie(response, request, COOKIE)
    return response


def misfit(exc: RequestValidationError) -> str:
    """What in the form or the address does not fit, field by field (the value typed is
    never echoed), and what to do."""
    problems = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{field or 'the address'}: {err.get('msg', 'invalid')}")
    return (
        "the form or address does not fit this page: "
        + "; ".join(problems)
        + "; correct it and send it again"
    )


class ConsoleRoute(APIRoute):
    """A console route: our errors become pages, not the API's JSON envelope."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SandboxError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                bad = InvalidRequest(misfit(exc))
                return render(request, "error.html", {"error": bad.to_dict()}, status=422)

        return guarded


def console_router() -> APIRouter:
    """A page module's router: under ``/console``, errors shown as pages, not in the
    API's schema."""
    return APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]  # a job's, agreement's or request's id


class SecurityHeaders:
    """Security headers on every response under ``/console`` (see the module's doc)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = str(scope["path"]).startswith(PREFIX + "/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                wanted = {
                    b"content-security-policy": CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                    b"cross-origin-opener-policy": b"same-origin",
                }
                if not static:
                    wanted[b"cache-control"] = b"no-store"
                headers += [(k, v) for k, v in wanted.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
