"""The operation flow of Art. 9 to 14 through the API: notice, application, two
reviews, agreement, data request, approval, then a job under the agreement's grant.

Each step is also tried by a role that may not take it (403 in the envelope).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_server import ApiServer, check_envelope, make_home, write_persons

from policies.errors import InputError, PermissionDenied
from sandbox.client import Client
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, insert

NOW = datetime.now(UTC)


def test_the_flow_from_notice_to_released_job(tmp_path, api_store):
    home = tmp_path / "home"
    tokens = make_home(home, store_url=api_store)
    platform = Platform.open(home)
    with platform.store.transaction() as conn:
        _, tokens["reviewer2"] = insert(conn, "reviewer2", Role.REVIEWER, "Uni B", None, now_utc())
    platform.close()
    csv, yaml_path = write_persons(tmp_path / "data")
    with ApiServer(home) as server:
        c = {n: Client(server.url, t, hooks=[check_envelope]) for n, t in tokens.items()}
        c["provider"].register_upload("persons", csv, yaml_path)
        notice = dict(
            title="Income by county",
            domain="finance",
            scenario="regional income aggregates",
            datasets=["persons"],
            conditions="licensed data firm",
            deadline=(NOW + timedelta(days=30)).isoformat(),
        )
        with pytest.raises(PermissionDenied):
            c["operator"].publish_notice(**notice)
        nid = c["authority"].publish_notice(**notice)
        application = dict(
            scenario="income by county for lending",
            datasets={"persons": None},
            security_measures="ISO 27001",
            security_officer="Wang Li",
            incident_plan="call the authority within one hour",
        )
        with pytest.raises(PermissionDenied):
            c["consumer"].apply(nid, **application)
        aid = c["operator"].apply(nid, **application)
        with pytest.raises(PermissionDenied):
            c["operator"].appoint_reviewers(aid, ["reviewer", "reviewer2"])
        assert len(c["authority"].appoint_reviewers(aid, ["reviewer", "reviewer2"])) == 2
        with pytest.raises(PermissionDenied):
            c["operator"].score(aid, capability=90, scenario=90, security=90)
        c["reviewer"].score(aid, capability=80, scenario=75, security=90)
        assert c["reviewer2"].score(aid, capability=85, scenario=70, security=80) == "passed"
        agreement = dict(
            valid_from=(NOW - timedelta(days=1)).isoformat(),
            valid_until=(NOW + timedelta(days=365)).isoformat(),
            rights_duties="aggregates only",
            security_requirements="no raw rows leave",
            exit_conditions="on breach",
            breach_liability="termination",
            disposal="delete",
        )
        with pytest.raises(InputError):
            c["authority"].sign_agreement(aid, **{**agreement, "valid_until": "never"})
        agid = c["authority"].sign_agreement(aid, **agreement)
        assert c["authority"].agreement(agid)["id"] == agid
        rid = c["operator"].request_data(agid, "persons", purpose="income by county")
        with pytest.raises(PermissionDenied):
            c["operator"].approve_request(rid)
        assert c["provider"].approve_request(rid) >= 1
        job = c["operator"].submit_job("SELECT county, COUNT(*) AS n FROM persons GROUP BY county")
        assert c["operator"].wait_job(job.job, timeout=60).state == "released"
        assert c["auditor"].verify_ledger().entries > 20
        for client in c.values():
            client.close()


@pytest.mark.parametrize(
    "body, step",
    [
        ("ApplicationBody", "sandbox.workflow.applications:apply"),
        ("ScoreBody", "sandbox.workflow.reviews:score"),
        ("AgreementBody", "sandbox.workflow.agreements:sign"),
        ("EvaluationBody", "sandbox.workflow.supervision:evaluate"),
        ("DataRequestBody", "sandbox.workflow.requests:request_data"),
        ("FeedbackBody", "sandbox.workflow.feedback:give"),
    ],
)
def test_a_body_passed_whole_names_only_the_steps_keyword_arguments(body, step):
    """The routes pass these bodies to their step as ``**dict(body)``: a field the step
    does not take would be a TypeError at every call, so each field must be one of the
    step's parameters, and every parameter the step requires must be a field."""
    import importlib
    import inspect

    from sandbox.api import workflow_models

    module, name = step.split(":")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    fields = set(getattr(workflow_models, body).model_fields)
    assert fields <= set(parameters), sorted(fields - set(parameters))
    required = {
        p.name
        for p in list(parameters.values())[3:]  # after the platform, the principal and the id
        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }
    assert required <= fields, sorted(required - fields)
