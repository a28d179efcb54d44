"""The routes every authority-approved offering has, written once: a verification
product (``/v1/verify/products``) and a scoring service (``/v1/score/services``) are
each defined by an operator, listed to those who may see them, and published or
rejected by the authority (Art. 13). :func:`add_offering_routes` registers the four
routes of one kind from a table of its service functions; each route calls the one
function the CLI calls.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.paging import AfterQuery, LimitQuery, page_of

NAME = r"^[a-z][a-z0-9_]{0,63}$"


class ConsentBody(BaseModel):
    """The subject's consent a call to a verification product or scoring service carries
    (Art. 19): its reference, who gave it, for what, and when."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(max_length=500)
    who: str = Field(max_length=500)
    purpose: str = Field(max_length=500)
    given_at: str = Field(max_length=40)


class RejectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


@dataclass(frozen=True)
class Offering:
    """One kind of offering: where its routes live and the service functions behind them."""

    path: str  # the collection, e.g. "/products" under the router's prefix
    noun: str  # for the routes' descriptions: "product", "scoring service"
    body: type[BaseModel]  # the definition's body
    define: Callable[..., dict[str, Any]]  # (platform, principal, definition)
    listing: Callable[..., list[dict[str, Any]]]  # (platform, principal)
    approve: Callable[..., dict[str, Any]]  # (platform, authority, name)
    reject: Callable[..., None]  # (platform, authority, name, reason)
    built: str  # what approval builds: "its index", "its grade index"
    seen_by: str  # who lists what


def add_offering_routes(router: APIRouter, offering: Offering) -> None:
    """Register define, list, approve and reject for ``offering`` on ``router``."""
    o = offering

    def define(request: Request, me: CurrentPrincipal, body: BaseModel) -> dict[str, Any]:
        return o.define(request.app.state.platform, me, body.model_dump())

    define.__annotations__["body"] = o.body  # FastAPI reads the body's model from here

    def listing(
        request: Request,
        me: CurrentPrincipal,
        response: Response,
        limit: int | None = LimitQuery,
        after: str | None = AfterQuery,
    ) -> list[dict[str, Any]]:
        rows = o.listing(request.app.state.platform, me)
        return page_of(request, response, rows, "name", limit, after)

    def approve(
        request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)
    ) -> dict[str, Any]:
        return o.approve(request.app.state.platform, me, name)

    def reject(
        request: Request,
        me: CurrentPrincipal,
        body: RejectionBody,
        name: str = PathParam(pattern=NAME),
    ) -> dict[str, Any]:
        o.reject(request.app.state.platform, me, name, body.reason)
        return {"name": name, "state": "rejected"}

    router.add_api_route(
        o.path, define, methods=["POST"], status_code=201,
        summary=f"Define a {o.noun}", description=f"File a {o.noun}'s definition (operators, "
        "under an agreement); it waits for the authority's approval.",
    )  # fmt: skip
    router.add_api_route(
        o.path, listing, methods=["GET"], summary=f"List {o.noun}s", description=o.seen_by
    )
    router.add_api_route(
        o.path + "/{name}/approve", approve, methods=["POST"], summary=f"Publish a {o.noun}",
        description=f"Publish a {o.noun}: build {o.built} (the authority).",
    )  # fmt: skip
    router.add_api_route(
        o.path + "/{name}/reject", reject, methods=["POST"], summary=f"Reject a {o.noun}",
        description=f"Reject a defined {o.noun} with a reason (the authority).",
    )  # fmt: skip
