"""The operation flow of Art. 9 to 24 over HTTP: one route per workflow action.

Each route calls the function of :mod:`sandbox.workflow` that the CLI calls,
which checks the role, the jurisdiction and the state, and writes the ledger.
Bodies are checked for shape here; their meaning (dates, states) is checked
there, and refused with the rule and the article.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from policies.workflow import Disposal, PassRule, Vote

from ..workflow import (
    agreements,
    airlock,
    applications,
    feedback,
    notices,
    requests,
    reviews,
    supervision,
)
from .auth import CurrentPrincipal
from .models import MAX_ID, NAME

router = APIRouter(prefix="/v1", tags=["workflow"])

TEXT = 10_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoticeBody(_Body):
    title: str = Field(min_length=1, max_length=500)
    domain: str = Field(min_length=1, max_length=200)
    scenario: str = Field(min_length=1, max_length=TEXT)
    datasets: list[str] = Field(min_length=1, max_length=100)
    conditions: str = Field(min_length=1, max_length=TEXT)
    deadline: str = Field(max_length=40, description="ISO time")
    jurisdiction: str | None = Field(default=None, max_length=32)
    min_score: int = Field(default=60, ge=0, le=100)
    min_reviewers: int = Field(default=2, ge=1, le=20)


class ApplicationBody(_Body):
    scenario: str = Field(min_length=1, max_length=TEXT)
    datasets: dict[str, list[str] | None] = Field(min_length=1, max_length=100)
    security_measures: str = Field(min_length=1, max_length=TEXT)
    security_officer: str = Field(min_length=1, max_length=200)
    incident_plan: str = Field(min_length=1, max_length=TEXT)
    job_kinds: list[str] = Field(default=["sql_aggregate"], max_length=10)
    product_kinds: list[str] = Field(default=["report"], max_length=10)


class ReviewersBody(_Body):
    reviewers: list[str] = Field(min_length=1, max_length=20)


class ScoreBody(_Body):
    capability: int = Field(ge=0, le=100)
    scenario: int = Field(ge=0, le=100)
    security: int = Field(ge=0, le=100)
    comment: str = Field(default="", max_length=TEXT)


class AgreementBody(_Body):
    valid_from: str = Field(max_length=40)
    valid_until: str = Field(max_length=40)
    rights_duties: str = Field(min_length=1, max_length=TEXT)
    security_requirements: str = Field(min_length=1, max_length=TEXT)
    exit_conditions: str = Field(min_length=1, max_length=TEXT)
    breach_liability: str = Field(min_length=1, max_length=TEXT)
    disposal: Disposal
    review_required: bool = False
    disclosure: dict[str, float | int | str] = Field(default_factory=dict)
    aggregates: list[str] = Field(default_factory=list, max_length=20)


class ReasonBody(_Body):
    reason: str = Field(min_length=1, max_length=TEXT)
    deadline: str | None = Field(default=None, max_length=40)


class EvaluationBody(_Body):
    passed: bool
    notes: str = Field(min_length=1, max_length=TEXT)
    deadline: str | None = Field(default=None, max_length=40)


class DataRequestBody(_Body):
    dataset: str = Field(pattern=NAME, max_length=100)
    purpose: str = Field(min_length=1, max_length=TEXT)
    columns: list[str] | None = Field(default=None, max_length=1000)


class VoteBody(_Body):
    decision: Vote
    reason: str = Field(min_length=1, max_length=TEXT)


class FeedbackBody(_Body):
    rating: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=TEXT)


class IncidentBody(_Body):
    operator: str = Field(pattern=NAME, max_length=100)
    kind: supervision.IncidentKind
    description: str = Field(min_length=1, max_length=TEXT)


class Created(BaseModel):
    id: int


class State(BaseModel):
    state: str


def _platform(request: Request):
    return request.app.state.platform


@router.post("/notices", response_model=Created, status_code=201)
def notice_publish(request: Request, me: CurrentPrincipal, body: NoticeBody):
    """The authority publishes an opening notice (Art. 9)."""
    notice_id = notices.publish(
        _platform(request),
        me,
        title=body.title,
        domain=body.domain,
        scenario=body.scenario,
        datasets=body.datasets,
        conditions=body.conditions,
        deadline=body.deadline,
        jurisdiction=body.jurisdiction,
        pass_rule=PassRule(min_score=body.min_score, min_reviewers=body.min_reviewers),
    )
    return Created(id=notice_id)


@router.post("/notices/{notice_id}/applications", response_model=Created, status_code=201)
def application_apply(
    request: Request,
    me: CurrentPrincipal,
    body: ApplicationBody,
    notice_id: int = PathParam(ge=1, le=MAX_ID),
):
    """An operator applies under a notice (Art. 10)."""
    application_id = applications.apply(
        _platform(request),
        me,
        notice_id,
        scenario=body.scenario,
        datasets=body.datasets,
        security_measures=body.security_measures,
        security_officer=body.security_officer,
        incident_plan=body.incident_plan,
        job_kinds=body.job_kinds,
        product_kinds=body.product_kinds,
    )
    return Created(id=application_id)


@router.post("/applications/{application_id}/reviewers", status_code=201)
def review_appoint(
    request: Request,
    me: CurrentPrincipal,
    body: ReviewersBody,
    application_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict[str, list[int]]:
    """The authority appoints reviewers (Art. 11)."""
    return {"reviews": reviews.appoint(_platform(request), me, application_id, body.reviewers)}


@router.post("/applications/{application_id}/scores", response_model=State)
def review_score(
    request: Request,
    me: CurrentPrincipal,
    body: ScoreBody,
    application_id: int = PathParam(ge=1, le=MAX_ID),
):
    """A reviewer scores an application; answers the application's state (Art. 11)."""
    state = reviews.score(
        _platform(request),
        me,
        application_id,
        capability=body.capability,
        scenario=body.scenario,
        security=body.security,
        comment=body.comment,
    )
    return State(state=str(getattr(state, "value", state)))


@router.get("/applications/{application_id}/reviews")
def review_list(
    request: Request, me: CurrentPrincipal, application_id: int = PathParam(ge=1, le=MAX_ID)
) -> list[dict]:
    """The reviews of an application, as the viewer may see them."""
    return reviews.reviews_of(_platform(request), me, application_id)


@router.post("/applications/{application_id}/agreement", response_model=Created, status_code=201)
def agreement_sign(
    request: Request,
    me: CurrentPrincipal,
    body: AgreementBody,
    application_id: int = PathParam(ge=1, le=MAX_ID),
):
    """The authority signs the agreement of a passed application (Art. 12, 13)."""
    agreement_id = agreements.sign(
        _platform(request),
        me,
        application_id,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        rights_duties=body.rights_duties,
        security_requirements=body.security_requirements,
        exit_conditions=body.exit_conditions,
        breach_liability=body.breach_liability,
        disposal=body.disposal,
        review_required=body.review_required,
        disclosure=dict(body.disclosure),
        aggregates=body.aggregates,
    )
    return Created(id=agreement_id)


@router.get("/agreements/{agreement_id}")
def agreement_show(
    request: Request, me: CurrentPrincipal, agreement_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """An agreement, as the viewer may see it."""
    platform = _platform(request)
    with platform.store.read() as conn:
        return agreements.agreement_dict(conn, me, agreement_id)


@router.post("/agreements/{agreement_id}/suspend", status_code=204)
def agreement_suspend(
    request: Request,
    me: CurrentPrincipal,
    body: ReasonBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> None:
    """The authority suspends an agreement (Art. 24); its jobs stop."""
    agreements.suspend(_platform(request), me, agreement_id, body.reason, body.deadline)


@router.post("/agreements/{agreement_id}/restore", status_code=204)
def agreement_restore(
    request: Request,
    me: CurrentPrincipal,
    body: ReasonBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> None:
    """The authority restores a suspended agreement."""
    agreements.restore(_platform(request), me, agreement_id, body.reason)


@router.post("/agreements/{agreement_id}/terminate")
def agreement_terminate(
    request: Request,
    me: CurrentPrincipal,
    body: ReasonBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict[str, list[str]]:
    """The authority terminates an agreement; the disposal clause runs."""
    return {"disposed": agreements.terminate(_platform(request), me, agreement_id, body.reason)}


@router.post("/agreements/{agreement_id}/evaluations", response_model=Created, status_code=201)
def agreement_evaluate(
    request: Request,
    me: CurrentPrincipal,
    body: EvaluationBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
):
    """The authority evaluates an operator under an agreement (Art. 21)."""
    evaluation_id = supervision.evaluate(
        _platform(request),
        me,
        agreement_id,
        passed=body.passed,
        notes=body.notes,
        deadline=body.deadline,
    )
    return Created(id=evaluation_id)


@router.post("/agreements/{agreement_id}/data-requests", response_model=Created, status_code=201)
def data_request(
    request: Request,
    me: CurrentPrincipal,
    body: DataRequestBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
):
    """An operator requests a dataset under its agreement (Art. 14)."""
    request_id = requests.request_data(
        _platform(request),
        me,
        agreement_id,
        body.dataset,
        purpose=body.purpose,
        columns=body.columns,
    )
    return Created(id=request_id)


@router.post("/data-requests/{request_id}/approve", status_code=201)
def data_request_approve(
    request: Request, me: CurrentPrincipal, request_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, int]:
    """The dataset's provider approves a request; the answer names the grant."""
    return {"grant": requests.approve(_platform(request), me, request_id)}


@router.post("/data-requests/{request_id}/refuse", status_code=204)
def data_request_refuse(
    request: Request,
    me: CurrentPrincipal,
    body: ReasonBody,
    request_id: int = PathParam(ge=1, le=MAX_ID),
) -> None:
    """The dataset's provider refuses a request, with the reason."""
    requests.refuse_request(_platform(request), me, request_id, body.reason)


@router.get("/jobs/{job_id}/review")
def output_review_show(
    request: Request, me: CurrentPrincipal, job_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """The output review of a withheld job (Art. 15)."""
    return airlock.show(_platform(request), me, job_id)


@router.post("/jobs/{job_id}/review")
def output_review_vote(
    request: Request, me: CurrentPrincipal, body: VoteBody, job_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """An appointed checker votes on a withheld output."""
    return airlock.vote(_platform(request), me, job_id, body.decision, body.reason)


@router.post("/products/{product_id}/feedback", response_model=Created, status_code=201)
def product_feedback(
    request: Request,
    me: CurrentPrincipal,
    body: FeedbackBody,
    product_id: str = PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"),
):
    """A consumer rates a product (Art. 19)."""
    return Created(id=feedback.give(_platform(request), me, product_id, body.rating, body.comment))


@router.post("/incidents", status_code=201)
def incident_report(request: Request, me: CurrentPrincipal, body: IncidentBody) -> dict[str, Any]:
    """Report a security incident of an operator (Art. 22)."""
    return supervision.report_incident(
        _platform(request), me, body.operator, body.kind, body.description
    )


@router.get("/notifications")
def notification_list(request: Request, me: CurrentPrincipal) -> list[dict]:
    """Notifications addressed to the viewer."""
    return supervision.notifications_of(_platform(request), me)
