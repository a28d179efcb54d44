"""The operation flow of Art. 9 to 24 over HTTP: one route per workflow action.

Each route calls the function of :mod:`sandbox.workflow` that the CLI calls,
which checks the role, the jurisdiction and the state, and writes the ledger.
Bodies are checked for shape here (types and size caps); their meaning (empty
texts, score ranges, dates, states) is checked there, and refused with the rule
and the article, so ``sandbox --server URL ...`` prints what the host prints.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from policies.workflow import PassRule
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.api.workflow_models import (
    AgreementBody,
    AnswerBody,
    ApplicationBody,
    CheckersBody,
    Created,
    DataRequestBody,
    DeliveryBody,
    DutyBody,
    EvaluationBody,
    ExpireBody,
    FeedbackBody,
    IncidentBody,
    InspectionBody,
    NoticeBody,
    PlanBody,
    QualityBody,
    ReasonBody,
    RectifyBody,
    ReviewersBody,
    ScheduleBody,
    ScoreBody,
    State,
    UsageBody,
    VoteBody,
)
from sandbox.registry.inbox import inbox_of
from sandbox.workflow import (
    agreements,
    airlock,
    applications,
    catalogue,
    consumers,
    deliveries,
    duties,
    feedback,
    notices,
    reading,
    requests,
    reviews,
    schedules,
    supervision,
    usage,
)
from sandbox.workflow.lists import list_page

router = APIRouter(prefix="/v1", tags=["workflow"])


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
        pass_rule=PassRule(body.min_score, body.min_reviewers, body.aggregate),
    )
    return Created(id=notice_id)


@router.get("/notices/{notice_id}")
def notice_show(
    request: Request, me: CurrentPrincipal, notice_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """A notice: any principal may read a public call (Art. 10)."""
    with _platform(request).store.read() as conn:
        return notices.notice_dict(conn, notice_id)


@router.post("/notices/{notice_id}/applications", response_model=Created, status_code=201)
def application_apply(
    request: Request,
    me: CurrentPrincipal,
    body: ApplicationBody,
    notice_id: int = PathParam(ge=1, le=MAX_ID),
):
    """An operator applies under a notice (Art. 10)."""
    # the body's fields are the step's keyword arguments, one for one (workflow_models)
    return Created(id=applications.apply(_platform(request), me, notice_id, **dict(body)))


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
    state = reviews.score(_platform(request), me, application_id, **dict(body))
    return State(state=str(getattr(state, "value", state)))


@router.get("/applications/{application_id}/reviews")
def review_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
    application_id: int = PathParam(ge=1, le=MAX_ID),
) -> list[dict]:
    """The reviews of an application, as the viewer may see them; with ``limit``, a page
    by reviewer."""
    rows = reviews.reviews_of(_platform(request), me, application_id)
    return page_of(request, response, rows, "reviewer", limit, after)


@router.post("/applications/{application_id}/agreement", response_model=Created, status_code=201)
def agreement_sign(
    request: Request,
    me: CurrentPrincipal,
    body: AgreementBody,
    application_id: int = PathParam(ge=1, le=MAX_ID),
):
    """The authority signs the agreement of a passed application (Art. 12, 13)."""
    agreement_id = agreements.sign(_platform(request), me, application_id, **dict(body))
    return Created(id=agreement_id)


@router.get("/agreements/{agreement_id}")
def agreement_show(
    request: Request, me: CurrentPrincipal, agreement_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """An agreement, as the viewer may see it."""
    platform = _platform(request)
    with platform.store.read() as conn:
        return agreements.agreement_dict(conn, me, agreement_id)


@router.post("/agreements/{agreement_id}/schedules")
def agreement_schedules(
    request: Request,
    me: CurrentPrincipal,
    body: ScheduleBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict[str, Any]:
    """An authority covering the agreement sets or changes how often trainings, drills and
    evaluations fall due (Art. 20, 21, 23); answers the agreement's schedules."""
    return schedules.change(_platform(request), me, agreement_id, body.model_dump())


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
    return Created(id=supervision.evaluate(_platform(request), me, agreement_id, **dict(body)))


@router.post("/agreements/{agreement_id}/data-requests", response_model=Created, status_code=201)
def data_request(
    request: Request,
    me: CurrentPrincipal,
    body: DataRequestBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
):
    """An operator requests a dataset under its agreement (Art. 14)."""
    return Created(id=requests.request_data(_platform(request), me, agreement_id, **dict(body)))


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
    """A consumer the product was delivered to gives feedback on its three points (Art. 16)."""
    return Created(id=feedback.give(_platform(request), me, product_id, **dict(body)))


@router.post("/products/{product_id}/deliveries", response_model=Created, status_code=201)
def product_deliver(
    request: Request,
    me: CurrentPrincipal,
    body: DeliveryBody,
    product_id: str = PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"),
):
    """An operator delivers its product to a named consumer (Art. 15)."""
    done = deliveries.deliver(_platform(request), me, product_id, body.consumer, body.note)
    return Created(id=done)


@router.post("/incidents", status_code=201)
def incident_report(request: Request, me: CurrentPrincipal, body: IncidentBody) -> dict[str, Any]:
    """Report a security incident (Art. 21): of an operator (``operator``: its data use is
    suspended at once), or a consumer's on a product that reached it (``product``: its
    operator, authority and providers are told; nothing is suspended)."""
    return consumers.incident_report(_platform(request), me, body.kind, body.description,
                                     operator=body.operator, product=body.product)  # fmt: skip


@router.post("/incident-plans", response_model=Created, status_code=201)
def incident_plan_file(request: Request, me: CurrentPrincipal, body: PlanBody):
    """A consumer files its incident-response plan (Art. 21); listed at /workflow/plans."""
    return Created(id=consumers.file_plan(_platform(request), me, body.plan))


@router.get("/inbox")
def inbox(
    request: Request,
    me: CurrentPrincipal,
    limit: int = Query(default=50, ge=1, le=500),
    before: int | None = Query(default=None, ge=1, le=MAX_ID),
    kind: str | None = Query(default=None, max_length=40),
) -> dict[str, Any]:
    """The caller's notifications, newest first, a page at a time (``next_before``)."""
    return inbox_of(_platform(request), me, limit=limit, before=before, kind=kind)


@router.get("/workflow/{kind}")
def workflow_list(
    request: Request,
    me: CurrentPrincipal,
    kind: Literal[
        "notices",
        "applications",
        "agreements",
        "requests",
        "tickets",
        "reviews",
        "evaluations",
        "incidents",
        "plans",
    ],
    limit: int = Query(default=50, ge=1, le=500),
    before: int | None = Query(default=None, ge=1, le=MAX_ID),
    status: str | None = Query(default=None, max_length=20),
    open_only: bool = Query(default=False, alias="open"),
) -> dict[str, Any]:
    """A page of workflow objects the caller may see, newest first (``next_before``)."""
    return list_page(_platform(request), me, kind, limit=limit, before=before, status=status,
                     open_only=open_only)  # fmt: skip


@router.get("/catalogue")
def product_catalogue(
    request: Request,
    me: CurrentPrincipal,
    limit: int = Query(default=50, ge=1, le=500),
    before: str | None = Query(default=None, max_length=200),
) -> dict[str, Any]:
    """The catalogue of released products in force, newest first, for every signed-in
    principal (Art. 17): ids, kinds, titles, operators, dataset names; never a value."""
    return catalogue.catalogue(_platform(request), me, limit=limit, before=before)


@router.post("/security-records", response_model=Created, status_code=201)
def duty_record(request: Request, me: CurrentPrincipal, body: DutyBody):
    """An operator records a staff training (Art. 20) or an emergency drill (Art. 21)."""
    fields = body.model_dump(exclude={"kind", "agreement"})
    return Created(id=duties.record(_platform(request), me, body.kind, **fields,
                                    agreement_id=body.agreement))  # fmt: skip


@router.get("/security-records")
def duty_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    operator: str | None = Query(default=None, max_length=100),
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
) -> list[dict]:
    """Training and drill records: the operator's own, an authority's reach, auditors all;
    with ``limit``, a page by id."""
    rows = duties.records_of(_platform(request), me, operator)
    return page_of(request, response, rows, "id", limit, after)


# --- the rest of the CLI's workflow commands, so each one runs with --server ------------------


@router.get("/applications/{application_id}")
def application_show(
    request: Request, me: CurrentPrincipal, application_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """An application: its applicant, the authority of the notice, its reviewers, auditors."""
    with _platform(request).store.read() as conn:
        return reading.application_for(conn, me, application_id)


@router.post("/agreements/expire")
def agreement_expire(request: Request, me: CurrentPrincipal, body: ExpireBody) -> dict[str, list]:
    """The authority expires agreements whose term ended; their disposal clause runs (Art. 13)."""
    return {"expired": agreements.expire(_platform(request), me, body.agreement)}


@router.post("/agreements/{agreement_id}/rectify", status_code=204)
def agreement_rectify(
    request: Request,
    me: CurrentPrincipal,
    body: RectifyBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> None:
    """The authority accepts a rectification: the agreement is restored (Art. 24)."""
    supervision.rectify(_platform(request), me, agreement_id, body.notes)


@router.post("/inspections", response_model=Created, status_code=201)
def inspection_record(request: Request, me: CurrentPrincipal, body: InspectionBody):
    """The authority records an inspection's findings and rectification tasks (Art. 22)."""
    inspection_id = supervision.inspect(
        _platform(request), me, body.operator, body.findings, body.tasks, body.deadline
    )
    return Created(id=inspection_id)


@router.post("/quality-tickets", response_model=Created, status_code=201)
def quality_report(request: Request, me: CurrentPrincipal, body: QualityBody):
    """An operator reports a data-quality problem to the dataset's provider (Art. 14)."""
    return Created(id=requests.report_quality(_platform(request), me, body.dataset, body.text))


@router.post("/quality-tickets/{ticket_id}/answer", status_code=204)
def quality_answer(
    request: Request,
    me: CurrentPrincipal,
    body: AnswerBody,
    ticket_id: int = PathParam(ge=1, le=MAX_ID),
) -> None:
    """The dataset's provider answers a quality ticket, naming the fixing version (Art. 14)."""
    requests.answer_quality(_platform(request), me, ticket_id, body.text, body.version)


@router.post("/usage-reports", status_code=201)
def usage_report(request: Request, me: CurrentPrincipal, body: UsageBody) -> dict[str, Any]:
    """An operator's usage report (Art. 16), recorded in the ledger.

    Answers ``report`` (the figures) and ``files``: usage.json, usage.csv and
    usage.png, base64, byte for byte what the host writes (the ledger entry
    holds the hash of usage.json), for the caller to save.
    """
    platform = _platform(request)
    data = usage.usage_report(platform, me, body.operator, body.period)
    with tempfile.TemporaryDirectory(prefix="usage-") as tmp:
        written = usage.write_report(platform, me, data, Path(tmp))
        files = {
            name: base64.b64encode(Path(path).read_bytes()).decode("ascii")
            for name, path in written.items()
        }
    return {"report": data, "files": files}


@router.post("/checkers", status_code=201)
def checkers_appoint(
    request: Request, me: CurrentPrincipal, body: CheckersBody
) -> dict[str, list[int]]:
    """The authority appoints two output checkers for an agreement or one job (Art. 15)."""
    ids = airlock.appoint_checkers(
        _platform(request), me, body.checkers, agreement_id=body.agreement, job_id=body.job
    )
    return {"appointments": ids}


@router.post("/jobs/{job_id}/review/open")
def output_review_open(
    request: Request, me: CurrentPrincipal, job_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """Open the review of a withheld job if none is open yet, and show it (votes sealed)."""
    return airlock.open_review(_platform(request), me, job_id)
