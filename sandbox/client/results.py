"""The client's typed results for the routes whose answers have no ``response_model`` in
the API (the workflow's records, pages, the catalogue, held outputs): one place, next to
the API's own models (:mod:`sandbox.api.models`, reused as they are).

Each is a frozen pydantic model built from the route's JSON: its fields are typed, and a
field the server adds later is kept (``extra="allow"``) rather than lost. For the code
written against the old ``dict`` answers a result still reads ``result["field"]``,
``result.get("field")`` and ``"field" in result``; :meth:`Result.to_dict` gives back the
JSON exactly as it came (same keys, same order), which the command line's ``--server``
backend prints. A shape the server does not keep (a missing field, a wrong type) raises
pydantic's :class:`~pydantic.ValidationError` here, naming the field.

Schemas are built on first use (``defer_build``), so ``import sandbox.client`` stays fast.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    model_validator,
)


class Result(BaseModel):
    """A route's answer: typed attributes, read as ``result.field`` or ``result["field"]``."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_the_json(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # every result, nested ones too (a page's items), keeps the JSON it was built from
        result = handler(data)
        if isinstance(data, dict) and isinstance(result, Result):
            result._raw = data
        return result

    def __getitem__(self, name: str) -> Any:
        if name in type(self).model_fields or name in (self.model_extra or {}):
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        """``result.get("field")`` as on the dict the route answers."""
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in type(self).model_fields or name in (self.model_extra or {})
        )

    def keys(self) -> Iterator[str]:
        """The answer's field names, as the route sent them."""
        return iter(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The answer's JSON as the route sent it (a copy), or the fields if built here."""
        if self._raw is not None:
            return copy.deepcopy(self._raw)
        return self.model_dump(mode="json", by_alias=True)


T = TypeVar("T", bound=Result)


class Page(Result, Generic[T]):
    """One page of a paged workflow list, newest first: pass ``next_before`` as ``before``
    for the next page (None on the last)."""

    items: list[T]
    total: int
    next_before: int | str | None


class Row(Result):
    """One row of ``GET /v1/workflow/{kind}``: its ``id`` and the kind's own columns
    (docs/workflow.md lists them; ``row["status"]``)."""

    id: int


class Notice(Result):
    """A call for applications (Art. 10): ``GET /v1/notices/{id}``."""

    id: int
    title: str
    domain: str
    scenario: str
    jurisdiction: str | None
    datasets: list[str]
    conditions: str
    deadline: str
    pass_rule: dict[str, Any]
    status: str


class Application(Result):
    """An application to a notice (Art. 11, 12): ``GET /v1/applications/{id}``."""

    id: int
    notice: int
    operator_id: int
    scenario: str
    datasets: dict[str, list[str] | None]
    job_kinds: list[str]
    product_kinds: list[str]
    security_officer: str
    status: str
    operator: str
    security_measures: str
    incident_plan: str


class Review(Result):
    """One reviewer's appointment and scores (Art. 12): ``GET .../reviews``."""

    review: int
    reviewer: str
    status: str
    scores: dict[str, Any] | None


class Agreement(Result):
    """An agreement (Art. 13): parties, scope, term, terms, grants and duty schedules.
    ``term`` is ``{"from": ..., "until": ...}``; ``schedules`` maps each duty to what fell
    due and what is missing."""

    id: int
    status: str
    parties: dict[str, Any]
    application: int
    jurisdiction: str | None
    scope: dict[str, Any]
    term: dict[str, str | None]
    rights_duties: str
    security_requirements: str
    exit_conditions: str
    breach_liability: str
    disposal: str
    review_required: bool
    rectify_deadline: str | None
    grants: list[int]
    schedules: dict[str, dict[str, Any]]


class InboxItem(Result):
    """A notification: what happened (``kind``), to what (``subject``), and its details."""

    id: int
    kind: str
    subject: str
    body: dict[str, Any]
    created_at: str


class CatalogueEntry(Result):
    """A released product in the catalogue (Art. 17): never a value, only what it is."""

    id: str
    kind: str
    title: str
    operator: str
    datasets: list[str]
    released_at: str


class CastVote(Result):
    """A checker's vote, shown once the review is decided (or to the checker who cast it)."""

    checker: str
    vote: str
    reason: str


class OutputReview(Result):
    """A withheld job's output review (Art. 15): its state and the votes in; the votes
    themselves stay sealed until the verdict. ``status`` is None before a review opens."""

    job: int
    status: str | None
    votes_in: int
    votes: list[CastVote]
    product: str | None = None


class HeldOutputSummary(Result):
    """A held output waiting for review, as ``GET /v1/held-outputs`` lists it."""

    job: int
    kind: str
    created_at: str
    status: str
    votes_in: int
    voted: bool
    appointed: bool


class HeldOutput(Result):
    """A held output cell by cell (``GET /v1/jobs/{id}/review/output``): the SQL, the
    datasets and versions, the rules, each cell with its flags; never its author."""

    job: int
    kind: str | None
    sql: str | None
    datasets: list[dict[str, Any]]
    rules: dict[str, Any]
    verdict: str | None
    summary: str
    counts: dict[str, Any]
    why: Any
    earlier: Any
    columns: list[str]
    rows: list[Any]
    review: OutputReview


__all__ = [
    "Agreement",
    "Application",
    "CastVote",
    "CatalogueEntry",
    "HeldOutput",
    "HeldOutputSummary",
    "InboxItem",
    "Notice",
    "OutputReview",
    "Page",
    "Result",
    "Review",
    "Row",
]


class QueuedTraining(Result):
    """A model's training left to the servers' executors (``POST /v1/models?wait=false``):
    its job, read with :meth:`Client.job` until it ends, then the card with :meth:`model`."""

    job: int
    state: str
    model: str


class ModelExport(Result):
    """A model file's export (Art. 4, 15): asked by the operator, approved or rejected by
    an authority covering the agreement; ``product`` once written."""

    name: str
    state: str
    agreement: int | None = None
    product: str | None = None
    reason: str | None = None
    updated_at: str | None = None
