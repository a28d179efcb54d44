"""The Python client's types (issue 26): every public method is annotated, takes named
parameters (never ``**kwargs``), and returns a typed result; the workflow's bodies are the
API's own models, so a wrong field or value fails here, before any request is sent.

The rule for results: a method returns a model (the API's, :mod:`sandbox.api.models`, or
the client's, :mod:`sandbox.client.results`), a dataclass, a scalar, ``None``, or a list
or page of those. A JSON object (``dict[str, Any]``, ``list[dict[str, Any]]``) is allowed
only for the routes named in :data:`FREE_FORM`, each with the reason its shape is not
modelled yet; bare ``dict``, ``list``, ``tuple`` or ``Any`` never.
"""

from __future__ import annotations

import ast
import inspect
import socket

import pytest
from pydantic import ValidationError

from policies.errors import InvalidRequest, SandboxError
from sandbox.client import Client
from sandbox.client.results import Agreement, InboxItem, Notice, OutputReview, Page, Row

# Methods still answering a JSON object: why each is not modelled (shrink this, never grow it
# without a reason).
FREE_FORM = {
    "openapi": "the OpenAPI document itself",
    "product_manifest": "the signed manifest, owned by sandbox.data.release",
    "evaluation": "an evaluation's figures and materials, owned by sandbox.workflow",
    "submit_material": "the material as kept, owned by sandbox.workflow.evaluations",
    "materials": "as submit_material",
    "duties": "training and drill records, owned by sandbox.workflow.duties",
    "inspections": "an inspection with its history, owned by sandbox.workflow.inspections",
    "report_incident": "the incident and what was suspended, owned by sandbox.workflow",
    "set_schedules": "duty -> what fell due, owned by sandbox.workflow.schedules",
    "data_uses": "a provider's datasets and their uses, owned by sandbox.workflow.providers",
    "countersign": "a signature, owned by sandbox.workflow.countersign",
    "hold_use": "a hold, owned by sandbox.workflow.providers",
    "define_verification": "a verification product, owned by sandbox.verification",
    "approve_verification": "as define_verification",
    "verification_products": "as define_verification",
    "verification_stats": "call counts, owned by sandbox.verification",
    "who_verified": "audit rows, owned by sandbox.verification.audit",
    "train_model": "a model card, owned by sandbox.models",
    "model": "as train_model",
    "models": "as train_model",
    "define_score_service": "a scoring service, owned by sandbox.models",
    "approve_score_service": "as define_score_service",
    "score_services": "as define_score_service",
    "who_scored": "audit rows, owned by sandbox.models.audit",
    "grade": "grades per subject, owned by sandbox.models",
}
JSON_OBJECT = {
    "dict[str, Any]",
    "list[dict[str, Any]]",
    "dict[str, dict[str, Any]]",
    "dict[str, list[dict[str, Any]]]",
}
BARE = {"dict", "list", "tuple", "set", "Any", "object"}


def _public_methods(cls: type = Client) -> list[tuple[str, inspect.Signature]]:
    methods = inspect.getmembers(cls, inspect.isfunction)
    return [(name, inspect.signature(m)) for name, m in methods if not name.startswith("_")]


def _signature_problems(cls: type = Client) -> tuple[list[str], list[str]]:
    """(parameters taken as ``**kwargs`` or ``*args``, parameters and returns unannotated)."""
    unannotated, variadic = [], []
    for name, sig in _public_methods(cls):
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                variadic.append(f"{name}({p.name})")
            elif p.annotation is p.empty:
                unannotated.append(f"{name}({p.name})")
        if sig.return_annotation is sig.empty:
            unannotated.append(f"{name} -> ?")
    return variadic, unannotated


def _bare_names(annotation: str) -> set[str]:
    """The names of ``annotation`` used without their type parameters (``dict``, ``Any``)."""
    tree = ast.parse(annotation, mode="eval")
    subscripted = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id in BARE and (id(n) not in subscripted or n.id == "Any")
    }


def test_every_public_method_is_annotated_and_takes_no_kwargs():
    variadic, unannotated = _signature_problems()
    assert not variadic, f"name the body's fields as keyword parameters: {variadic}"
    assert not unannotated, f"annotate these parameters and returns: {unannotated}"


def test_every_result_is_typed_and_json_objects_only_where_named():
    loose, unnamed = [], []
    for name, sig in _public_methods():
        returned = " ".join(str(sig.return_annotation).split())
        if returned in JSON_OBJECT:
            if name not in FREE_FORM:
                unnamed.append(f"{name} -> {returned}")
        elif bare := _bare_names(returned):
            loose.append(f"{name} -> {returned} ({', '.join(sorted(bare))})")
    assert not loose, f"bare generics or Any in results: {loose}"
    assert not unnamed, (
        f"a JSON object for a route with a known shape: {unnamed}; return a model "
        "(sandbox.api.models or sandbox.client.results), or name it in FREE_FORM with why"
    )
    public = {name for name, _ in _public_methods()}
    assert not FREE_FORM.keys() - public, f"gone, take off FREE_FORM: {FREE_FORM.keys() - public}"


def test_the_rules_see_kwargs_a_missing_annotation_and_a_bare_generic():
    class Loose:
        def publish(self, **fields: object) -> int:
            return 0

        def show(self, notice_id):  # noqa: ANN001, ANN201 - the case under test
            return {}

    assert _signature_problems(Loose) == (["publish(fields)"],
                                          ["show(notice_id)", "show -> ?"])  # fmt: skip
    assert _bare_names("dict") == {"dict"} and _bare_names("list[dict]") == {"dict"}
    assert _bare_names("Any") == {"Any"} and _bare_names("dict[str, Any]") == {"Any"}
    assert _bare_names("Page[InboxItem]") == set() and _bare_names("list[int] | None") == set()


@pytest.fixture
def closed_port() -> str:
    """The URL of a port nothing listens on: any request sent there fails to connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


NOTICE = dict(title="t", domain="d", scenario="s", datasets=["persons"], deadline="2030-01-01")
TERMS = dict(valid_from="2026-01-01", valid_until="2027-01-01", rights_duties="r",
             security_requirements="s", exit_conditions="e", breach_liability="b")  # fmt: skip


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda api: api.publish_notice(**{**NOTICE, "min_score": "high"}), "min_score"),
        (lambda api: api.publish_notice(**{**NOTICE, "datasets": []}), "datasets"),
        (lambda api: api.publish_notice(**{**NOTICE, "aggregate": "median"}), "aggregate"),
        (lambda api: api.sign_agreement(1, **TERMS, disposal="burn"), "disposal"),
        (lambda api: api.apply(1, scenario="s", datasets={}, security_measures="m"), "datasets"),
        (lambda api: api.vote(1, "maybe", "r"), "decision"),
        (lambda api: api.report_incident("op", "fire", "d"), "kind"),
        (lambda api: api.request_data(1, "no such/name", purpose="p"), "dataset"),
        (
            lambda api: api.record_duty("training", held_on="x", topic="t", attendees="12 people"),
            "attendees",
        ),  # fmt: skip
    ],
)
def test_a_wrong_value_fails_in_the_client_before_any_request(closed_port, call, field):
    sent = []
    with Client(closed_port, "token", hooks=[sent.append], retry=None) as api:
        with pytest.raises(InvalidRequest) as info:
            call(api)
    error = info.value
    assert isinstance(error.__cause__, ValidationError), "pydantic's error is the cause"
    assert error.message.startswith("the request does not fit the API schema: " + field + ":")
    assert error.code == "invalid_request" and error.status == 422 and error.request_id is None
    assert sent == []  # nothing reached (or tried to reach) the closed port


def test_a_wrong_field_name_fails_as_python_does_and_a_good_body_is_sent(closed_port):
    with Client(closed_port, "token", retry=None) as api:
        with pytest.raises(TypeError, match="titel"):
            api.publish_notice(**{**NOTICE, "titel": "t"})  # type: ignore[call-arg]
        with pytest.raises(SandboxError) as info:  # a valid body goes out, and finds no one
            api.publish_notice(**NOTICE)
    assert info.value.code == "unreachable"


def test_results_are_typed_and_still_read_as_the_dicts_they_were():
    page = Page[InboxItem].model_validate(
        {
            "items": [
                {
                    "id": 7,
                    "kind": "agreement.signed",
                    "subject": "agreement:3",
                    "body": {},
                    "created_at": "2026-12-01T00:00:00Z",
                    "later": 1,
                }
            ],
            "total": 1,
            "next_before": None,
        }  # fmt: skip
    )
    item = page.items[0]
    assert item.id == item["id"] == 7 and page["total"] == 1 and page.next_before is None
    assert "later" in item and item.get("missing") is None
    assert list(item.to_dict()) == ["id", "kind", "subject", "body", "created_at", "later"]
    with pytest.raises(KeyError):
        item["missing"]
    with pytest.raises(ValidationError):
        item.id = 8  # type: ignore[misc]  # results are frozen
    with pytest.raises(ValidationError, match="title"):
        Notice.model_validate({"id": 1})  # a shape the server no longer keeps is named
    review = OutputReview.model_validate({"job": 3, "status": None, "votes_in": 0, "votes": []})
    assert review.to_dict() == {"job": 3, "status": None, "votes_in": 0, "votes": []}
    assert Row.model_validate({"id": 2, "status": "active"})["status"] == "active"
    assert "schedules" in Agreement.model_fields
