"""Verification products over HTTP (数据核验, docs/verification.md).

``POST /v1/verify/{product}`` is the consumers' call: one subject (``keys``) or a batch
(``items``, up to 1,000), with the consent reference (Art. 19). The answer comes after
the call's ledger entry is durable (group commit). Definition, approval, stats and
the auditor's "who verified this subject?" call the functions the CLI calls.

Each server process keeps one :class:`sandbox.verification.service.VerificationService` on
``app.state`` (its index readers and its group-commit thread), made on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from policies.errors import InputError
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.offerings import ConsentBody, Offering, add_offering_routes
from sandbox.verification import audit as verify_audit
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification

router = APIRouter(prefix="/v1/verify", tags=["verification"])
PRODUCT = r"^[a-z][a-z0-9_]{0,63}$"
_LOCK = threading.Lock()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionBody(_Body):
    name: str = Field(pattern=PRODUCT)
    dataset: str = Field(min_length=1, max_length=200)
    keys: list[str] = Field(min_length=1, max_length=4)
    codes: list[str] = Field(min_length=2, max_length=20)
    rule: str = Field(min_length=1, max_length=20_000)
    miss_codes: list[str] | None = Field(default=None, max_length=20)
    person_level: bool | None = None
    description: str = Field(default="", max_length=2000)


class ItemBody(_Body):
    keys: dict[str, str] = Field(min_length=1, max_length=4)
    consent: ConsentBody | None = None


class CallBody(_Body):
    keys: dict[str, str] | None = Field(default=None, max_length=4)
    items: list[ItemBody] | None = Field(default=None, max_length=verification.MAX_BATCH)
    consent: ConsentBody | None = None


class WhoBody(_Body):
    keys: dict[str, str] = Field(min_length=1, max_length=4)
    product: str | None = Field(default=None, pattern=PRODUCT)


def service(request: Request) -> verification.VerificationService:
    state = request.app.state
    current = getattr(state, "verification", None)
    if current is None:
        with _LOCK:
            current = getattr(state, "verification", None)
            if current is None:
                current = state.verification = verification.VerificationService(state.platform)
    return current


add_offering_routes(
    router,
    Offering(
        path="/products",
        noun="verification product",
        body=DefinitionBody,
        define=verify_products.define,
        listing=verify_products.list_products,
        approve=verify_products.approve,
        reject=verify_products.reject,
        built="its index",
        seen_by="Products you may see: consumers the published ones, operators their own.",
    ),
)


@router.get("/products/{name}/stats")
def stats(
    request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=PRODUCT)
) -> dict[str, Any]:
    """Counts of calls, codes, refusals and throttled or blocked consumers."""
    return verify_audit.stats(request.app.state.platform, me, name)


@router.post("/who")
def who(request: Request, me: CurrentPrincipal, body: WhoBody) -> list[dict[str, Any]]:
    """Who verified the subject with these keys? (auditors, the authority; ledgered)"""
    return verify_audit.who(request.app.state.platform, me, body.keys, body.product)


@router.post("/{product}")
def call(
    request: Request,
    me: CurrentPrincipal,
    body: CallBody,
    product: str = PathParam(pattern=PRODUCT),
) -> dict[str, Any]:
    """Verify one subject (``keys``) or up to 1,000 (``items``): codes, never values."""
    if (body.keys is None) == (body.items is None):
        raise InputError("send either 'keys' (one subject) or 'items' (a batch), not both")
    consent = body.consent.model_dump() if body.consent else None
    items: list[dict[str, Any]]
    if body.items is None:  # then keys were sent (exactly one of the two is)
        items = [{"keys": body.keys}]
    else:
        items = [
            {"keys": i.keys, "consent": i.consent.model_dump() if i.consent else None}
            for i in body.items
        ]
    result = service(request).call(me, product, items, consent)
    out = result.to_dict()
    if body.keys is not None:
        only = result.results[0]
        out["code"] = only.code
        if only.refused:
            from policies.errors import PolicyRefusal

            raise PolicyRefusal(only.refused, only.message or "refused", article="Art. 19")
    return out
