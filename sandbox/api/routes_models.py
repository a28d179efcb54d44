"""Models and scoring services over HTTP (数据模型, 数据服务; docs/models.md).

``POST /v1/models`` trains a model inside as a job of kind ``model_train`` and answers
its signed card once training and the checks are done (the request waits, up to
``model.time_limit_s``); with ``?wait=false`` it queues the job for the servers'
executors and answers 202 with the job's id.
``POST /v1/score/{service}`` is the consumers' call: subject keys with consent in,
grades out. Each route calls the one function the CLI calls.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.offerings import ConsentBody, Offering, RejectionBody, add_offering_routes
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.models import audit as score_audit
from sandbox.models import calls, export, service, services, training

router = APIRouter(tags=["models"])
NAME = r"^[a-z][a-z0-9_]{0,63}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainBody(_Body):
    name: str = Field(pattern=NAME)
    features: str = Field(min_length=1, max_length=64 * 1024)
    label: str = Field(min_length=1, max_length=64)
    algorithm: str = Field(min_length=1, max_length=64)
    params: dict[str, float] = Field(default_factory=dict, max_length=10)
    holdout: float = 0.3
    seed: int = 1
    description: str = Field(default="", max_length=500)


class BandBody(_Body):
    grade: str = Field(min_length=1, max_length=40)
    upto: float


class ServiceBody(_Body):
    name: str = Field(pattern=NAME)
    model: str = Field(pattern=NAME)
    bands: list[BandBody] = Field(min_length=1, max_length=20)
    description: str = Field(default="", max_length=500)


class ItemBody(_Body):
    key: str = Field(min_length=1, max_length=200)
    consent: ConsentBody | None = None


class ScoreBody(_Body):
    items: list[ItemBody] = Field(min_length=1, max_length=1000)
    consent: ConsentBody | None = None


@router.post("/v1/models", status_code=201)
def train(
    request: Request,
    me: CurrentPrincipal,
    body: TrainBody,
    wait: bool = Query(
        default=True,
        description="true: train in this request and answer the card (201); false: queue the "
        "training job for the servers' executors and answer its id (202); read it with "
        "GET /v1/jobs/{id}?wait=S, then the card with GET /v1/models/{name}",
    ),
) -> Any:
    """Train a model inside, judge it and sign its card (operators); a job of kind
    ``model_train`` either way."""
    platform = request.app.state.platform
    if wait:
        return training.train(platform, me, body.model_dump())
    job_id = training.enqueue(platform, me, body.model_dump())
    request.app.state.executor.wake()
    body_out = {"job": job_id, "state": "queued", "model": body.name}
    return JSONResponse(body_out, status_code=202)


@router.get("/v1/models")
def models(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
) -> list[dict[str, Any]]:
    """The models you may see: operators their own; authorities and auditors all; with
    ``limit``, a page by name."""
    rows = service.list_models(request.app.state.platform, me)
    return page_of(request, response, rows, "name", limit, after)


@router.get("/v1/models/exports")
def model_exports(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
) -> list[dict[str, Any]]:
    """The exports of model files you may see: operators their own; authorities and
    auditors all (a county authority its county's); with ``limit``, a page by name."""
    rows = export.list_exports(request.app.state.platform, me)
    return page_of(request, response, rows, "name", limit, after)


@router.post("/v1/models/{name}/export", status_code=201)
def export_model(
    request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)
) -> dict[str, Any]:
    """Ask to export a passed model's file (operators): an authority approves it."""
    return export.request_export(request.app.state.platform, me, name)


@router.post("/v1/models/{name}/export/approve")
def approve_export(
    request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)
) -> dict[str, Any]:
    """Approve the export (an authority covering the agreement): the product is written."""
    return export.approve_export(request.app.state.platform, me, name)


@router.post("/v1/models/{name}/export/reject")
def reject_export(
    request: Request,
    me: CurrentPrincipal,
    body: RejectionBody,
    name: str = PathParam(pattern=NAME),
) -> dict[str, Any]:
    """Reject the export with a reason (an authority covering the agreement)."""
    export.reject_export(request.app.state.platform, me, name, body.reason)
    return {"name": name, "state": "rejected"}


@router.get("/v1/models/{name}")
def model(
    request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)
) -> dict[str, Any]:
    """A model's signed card."""
    return service.show(request.app.state.platform, me, name)


add_offering_routes(
    router,
    Offering(
        path="/v1/score/services",
        noun="scoring service",
        body=ServiceBody,
        define=services.define,
        listing=services.list_services,
        approve=services.approve,
        reject=services.reject,
        built="its grade index",
        seen_by="Scoring services you may see: consumers the published ones.",
    ),
)


class WhoBody(_Body):
    key: str = Field(min_length=1, max_length=200)
    service: str | None = Field(default=None, pattern=NAME)


@router.post("/v1/score/who")
def who(request: Request, me: CurrentPrincipal, body: WhoBody) -> list[dict[str, Any]]:
    """Who graded this subject? (auditors, the authority; the key in the body, hashed)"""
    return score_audit.who(request.app.state.platform, me, body.key, body.service)


@router.post("/v1/score/{name}")
def score(
    request: Request, me: CurrentPrincipal, body: ScoreBody, name: str = PathParam(pattern=NAME)
) -> dict[str, Any]:
    """Grades of up to 1,000 subjects, each with the subject's consent (consumers)."""
    items = [item.model_dump(exclude_none=True) for item in body.items]
    consent = body.consent.model_dump() if body.consent else None
    return calls.call(request.app.state.platform, me, name, items, consent).to_dict()
