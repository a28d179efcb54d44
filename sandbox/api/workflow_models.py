"""The request bodies of the workflow's routes (:mod:`sandbox.api.routes_workflow`): their
shape and size caps. What they mean (empty texts, score ranges, dates, states) is checked
by :mod:`sandbox.workflow`, which names the rule and the article."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from policies.workflow import Aggregate, Disposal, IncidentKind, Vote
from sandbox.api.models import MAX_ID, NAME

TEXT = 10_000
EVERY = "month, quarter or year"
Name = Annotated[str, Field(max_length=100)]
Line = Annotated[str, Field(max_length=TEXT)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoticeBody(Body):
    title: str = Field(max_length=500)
    domain: str = Field(max_length=200)
    scenario: str = Field(max_length=TEXT)
    datasets: list[str] = Field(min_length=1, max_length=100)
    conditions: str = Field(default="", max_length=TEXT)
    deadline: str = Field(max_length=40, description="ISO time")
    jurisdiction: str | None = Field(default=None, max_length=32)
    min_score: int = Field(default=60, ge=-MAX_ID, le=MAX_ID, description="0 to 100")
    min_reviewers: int = Field(default=2, ge=-MAX_ID, le=MAX_ID, description="at least 1")
    aggregate: Aggregate = Aggregate.MEAN


class ApplicationBody(Body):
    scenario: str = Field(max_length=TEXT)
    datasets: dict[str, list[str] | None] = Field(min_length=1, max_length=100)
    security_measures: str = Field(max_length=TEXT)
    security_officer: str = Field(default="", max_length=200, description="required (Art. 20)")
    incident_plan: str = Field(default="", max_length=TEXT, description="required (Art. 21)")
    job_kinds: list[str] = Field(default=["sql_aggregate"], max_length=10)
    product_kinds: list[str] = Field(default=["report"], max_length=10)


class ReviewersBody(Body):
    reviewers: list[str] = Field(min_length=1, max_length=20)


class ScoreBody(Body):
    capability: int = Field(ge=-MAX_ID, le=MAX_ID, description="0 to 100")
    scenario: int = Field(ge=-MAX_ID, le=MAX_ID, description="0 to 100")
    security: int = Field(ge=-MAX_ID, le=MAX_ID, description="0 to 100")
    comment: str = Field(default="", max_length=TEXT)


class AgreementBody(Body):
    valid_from: str = Field(max_length=40)
    valid_until: str = Field(max_length=40)
    rights_duties: str = Field(max_length=TEXT)
    security_requirements: str = Field(max_length=TEXT)
    exit_conditions: str = Field(max_length=TEXT)
    breach_liability: str = Field(max_length=TEXT)
    disposal: Disposal
    review_required: bool = False
    disclosure: dict[str, float | int | str] = Field(default_factory=dict)
    aggregates: list[str] = Field(default_factory=list, max_length=20)
    report_every: str | None = Field(default=None, max_length=20, description="month or quarter")
    training_every: str | None = Field(default=None, max_length=20, description=EVERY)
    drill_every: str | None = Field(default=None, max_length=20, description=EVERY)
    evaluate_every: str | None = Field(default=None, max_length=20, description=EVERY)


class ScheduleBody(Body):
    """How often each duty falls due under an agreement; a null one stays as it is."""

    training: str | None = Field(default=None, max_length=20, description=EVERY + " (Art. 20)")
    drill: str | None = Field(default=None, max_length=20, description=EVERY + " (Art. 21)")
    evaluation: str | None = Field(default=None, max_length=20, description=EVERY + " (Art. 23)")


class ReasonBody(Body):
    reason: str = Field(max_length=TEXT)
    deadline: str | None = Field(default=None, max_length=40)


class CountersignBody(Body):
    dataset: str = Field(pattern=NAME, max_length=100)
    terms: str = Field(max_length=TEXT)


class EvaluationBody(Body):
    passed: bool
    notes: str = Field(max_length=TEXT)
    deadline: str | None = Field(default=None, max_length=40)
    materials: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=100, description="the materials it considered"
    )
    score: int | None = Field(default=None, ge=-MAX_ID, le=MAX_ID, description="0 to 100")


class DataRequestBody(Body):
    dataset: str = Field(pattern=NAME, max_length=100)
    purpose: str = Field(max_length=TEXT)
    columns: list[str] | None = Field(default=None, max_length=1000)


class VoteBody(Body):
    decision: Vote
    reason: str = Field(max_length=TEXT)


class FeedbackBody(Body):
    """The three points of Art. 16, each 1 to 5 (checked, with the article, by the workflow)."""

    quality: int = Field(ge=-MAX_ID, le=MAX_ID, description="the product's quality, 1 to 5")
    use: int = Field(ge=-MAX_ID, le=MAX_ID, description="how it was used, 1 to 5")
    effect: int = Field(ge=-MAX_ID, le=MAX_ID, description="what it did, 1 to 5")
    comment: str = Field(default="", max_length=TEXT)


class DutyBody(Body):
    kind: str = Field(max_length=20, description="training (Art. 20) or drill (Art. 21)")
    held_on: str = Field(max_length=40, description="the day it was held, ISO date")
    topic: str = Field(max_length=TEXT)
    attendees: int = Field(ge=-MAX_ID, le=MAX_ID)
    names: list[str] = Field(default_factory=list, max_length=1000)
    agreement: int | None = Field(default=None, ge=1, le=MAX_ID)


class DeliveryBody(Body):
    consumer: str = Field(max_length=100)
    note: str = Field(default="", max_length=TEXT)


class IncidentBody(Body):
    """``operator`` (operators and authorities) or ``product`` (consumers), not both."""

    operator: str | None = Field(default=None, pattern=NAME, max_length=100)
    product: str | None = Field(default=None, max_length=64)
    kind: IncidentKind
    description: str = Field(max_length=TEXT)


class PlanBody(Body):
    plan: str = Field(max_length=TEXT, description="the consumer's incident-response plan")


class RectifyBody(Body):
    notes: str = Field(max_length=TEXT)


class ExpireBody(Body):
    agreement: int | None = Field(default=None, ge=1, le=MAX_ID, description="all if null")


class InspectionBody(Body):
    operator: str = Field(pattern=NAME, max_length=100)
    findings: list[Line] = Field(max_length=100)
    tasks: list[Line] = Field(default_factory=list, max_length=100)
    deadline: str | None = Field(default=None, max_length=40)


class QualityBody(Body):
    dataset: str = Field(pattern=NAME, max_length=100)
    text: str = Field(max_length=TEXT)


class AnswerBody(Body):
    text: str = Field(max_length=TEXT)
    version: int | None = Field(default=None, ge=1, le=MAX_ID, description="the fixing version")


class CheckersBody(Body):
    checkers: list[Name] = Field(max_length=20)
    agreement: int | None = Field(default=None, ge=1, le=MAX_ID)
    job: int | None = Field(default=None, ge=1, le=MAX_ID)


class UsageBody(Body):
    operator: str = Field(pattern=NAME, max_length=100)
    period: str = Field(max_length=20, description="2026-Q3, 2026-07 or 2026")


class Created(BaseModel):
    id: int


class State(BaseModel):
    state: str
