"""The workflow's calls of the HTTP client (Art. 9 to 15): notices, applications,
reviews, agreements, data requests, the providers' signatures and holds, output review.
Mixed into :class:`sandbox.client.Client`, whose ``_json`` sends each request; the calls of
supervision, duties and lists are in :mod:`sandbox.client.supervision`.

Each body is built with the API's own model of it (:mod:`sandbox.api.workflow_models`,
by :func:`sandbox.client.envelope.body_of`): the keyword parameters are the model's fields,
with its defaults, and a value the API would refuse is refused here before anything is
sent. Answers are typed (:mod:`sandbox.client.results`); a created record's answer
(:class:`~sandbox.api.workflow_models.Created`) is returned as its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from policies.workflow import Aggregate, Disposal, Vote
from sandbox.api import workflow_models as wm
from sandbox.client.envelope import body_of
from sandbox.client.results import (
    Agreement,
    Application,
    HeldOutput,
    HeldOutputSummary,
    Notice,
    OutputReview,
    Review,
)


class WorkflowCalls:
    """One method per workflow route, with the route body's fields as keyword parameters."""

    # Sent by the Client (the mixin's methods build requests only).
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def _created(self, path: str, body: dict[str, Any]) -> int:
        """POST a body whose answer is the API's ``Created``; its id."""
        return wm.Created.model_validate(self._json("POST", path, json=body)).id

    # --- notices, applications, reviews (Art. 10 to 12) ---------------------------------

    def publish_notice(
        self,
        *,
        title: str,
        domain: str,
        scenario: str,
        datasets: list[str],
        deadline: str,
        conditions: str = "",
        jurisdiction: str | None = None,
        min_score: int = 60,
        min_reviewers: int = 2,
        aggregate: Aggregate | str = Aggregate.MEAN,
    ) -> int:
        """The authority publishes a call for applications (Art. 10); returns its id.

        Example: ``api.publish_notice(title="Credit scoring", domain="finance",
        scenario="county credit", datasets=["persons"], conditions="aggregates only",
        deadline=deadline)``
        """
        body = body_of(wm.NoticeBody, title=title, domain=domain, scenario=scenario,
                       datasets=datasets, deadline=deadline, conditions=conditions,
                       jurisdiction=jurisdiction, min_score=min_score,
                       min_reviewers=min_reviewers, aggregate=aggregate)  # fmt: skip
        return self._created("/v1/notices", body)

    def notice(self, notice_id: int) -> Notice:
        """A published call for applications.

        Example: ``api.notice(notice_id).title``
        """
        return Notice.model_validate(self._json("GET", f"/v1/notices/{notice_id}"))

    def apply(
        self,
        notice_id: int,
        *,
        scenario: str,
        datasets: dict[str, list[str] | None],
        security_measures: str,
        security_officer: str = "",
        incident_plan: str = "",
        job_kinds: Sequence[str] = ("sql_aggregate",),
        product_kinds: Sequence[str] = ("report",),
    ) -> int:
        """An operator applies to a notice (Art. 11): ``datasets`` maps each name to the
        columns asked (None: all); returns the application id.

        Example: ``api.apply(notice_id, scenario="county credit", datasets={"persons": None},
        security_measures="...", security_officer="Li", incident_plan="...")``
        """
        body = body_of(wm.ApplicationBody, scenario=scenario, datasets=datasets,
                       security_measures=security_measures, security_officer=security_officer,
                       incident_plan=incident_plan, job_kinds=list(job_kinds),
                       product_kinds=list(product_kinds))  # fmt: skip
        return self._created(f"/v1/notices/{notice_id}/applications", body)

    def application(self, application_id: int) -> Application:
        """The applicant, the notice's authority, appointed reviewers and auditors may read it.

        Example: ``api.application(application_id).scenario``
        """
        return Application.model_validate(self._json("GET", f"/v1/applications/{application_id}"))

    def appoint_reviewers(self, application_id: int, reviewers: list[str]) -> list[int]:
        """The authority appoints reviewers of an application; returns the review ids.

        Example: ``api.appoint_reviewers(application_id, ["prof_sun", "prof_qian"])``
        """
        path = f"/v1/applications/{application_id}/reviewers"
        body = body_of(wm.ReviewersBody, reviewers=reviewers)
        return [int(i) for i in self._json("POST", path, json=body)["reviews"]]

    def score(
        self,
        application_id: int,
        *,
        capability: int,
        scenario: int,
        security: int,
        comment: str = "",
    ) -> str:
        """A reviewer scores an application (each score 0 to 100); returns its state.

        Example: ``api.score(application_id, capability=80, scenario=75, security=90)``
        """
        body = body_of(wm.ScoreBody, capability=capability, scenario=scenario,
                       security=security, comment=comment)  # fmt: skip
        path = f"/v1/applications/{application_id}/scores"
        return wm.State.model_validate(self._json("POST", path, json=body)).state

    def reviews(self, application_id: int) -> list[Review]:
        """The reviews of an application, each with its scores.

        Example: ``[r.reviewer for r in api.reviews(application_id)]``
        """
        rows = self._json("GET", f"/v1/applications/{application_id}/reviews")
        return [Review.model_validate(r) for r in rows]

    # --- agreements (Art. 13) ------------------------------------------------------------

    def sign_agreement(
        self,
        application_id: int,
        *,
        valid_from: str,
        valid_until: str,
        rights_duties: str,
        security_requirements: str,
        exit_conditions: str,
        breach_liability: str,
        disposal: Disposal | str,
        review_required: bool = False,
        disclosure: dict[str, float | int | str] | None = None,
        aggregates: list[str] | None = None,
        report_every: str | None = None,
        training_every: str | None = None,
        drill_every: str | None = None,
        evaluate_every: str | None = None,
    ) -> int:
        """The authority signs the agreement of a passed application; ``disposal`` is
        ``delete`` or ``hand_over``; the ``*_every`` are month, quarter or year. Returns
        the agreement id.

        Example: ``api.sign_agreement(application_id, valid_from=start, valid_until=end,
        rights_duties="...", security_requirements="...", exit_conditions="...",
        breach_liability="...", disposal="delete")``
        """
        body = body_of(wm.AgreementBody, valid_from=valid_from, valid_until=valid_until,
                       rights_duties=rights_duties, security_requirements=security_requirements,
                       exit_conditions=exit_conditions, breach_liability=breach_liability,
                       disposal=disposal, review_required=review_required,
                       disclosure=disclosure or {}, aggregates=aggregates or [],
                       report_every=report_every, training_every=training_every,
                       drill_every=drill_every, evaluate_every=evaluate_every)  # fmt: skip
        return self._created(f"/v1/applications/{application_id}/agreement", body)

    def agreement(self, agreement_id: int) -> Agreement:
        """An agreement: its terms, state and datasets.

        Example: ``api.agreement(agreement_id).status``
        """
        return Agreement.model_validate(self._json("GET", f"/v1/agreements/{agreement_id}"))

    def set_schedules(
        self,
        agreement_id: int,
        *,
        training: str | None = None,
        drill: str | None = None,
        evaluation: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Set or change how often trainings (Art. 20), drills (Art. 21) and evaluations
        (Art. 23) fall due under an agreement (month, quarter or year; None: unchanged);
        returns its schedules (duty -> what fell due and what is missing).

        Example: ``api.set_schedules(agreement_id, training="quarter", evaluation="year")``
        """
        body = body_of(wm.ScheduleBody, training=training, drill=drill, evaluation=evaluation)
        return self._json("POST", f"/v1/agreements/{agreement_id}/schedules", json=body)

    def suspend_agreement(
        self, agreement_id: int, reason: str, deadline: str | None = None
    ) -> None:
        """The authority suspends an agreement (its grants stop) until a deadline to rectify.

        Example: ``api.suspend_agreement(agreement_id, "late security report", deadline)``
        """
        body = body_of(wm.ReasonBody, reason=reason, deadline=deadline)
        self._call("POST", f"/v1/agreements/{agreement_id}/suspend", json=body)

    def restore_agreement(self, agreement_id: int, reason: str) -> None:
        """The authority restores a suspended agreement.

        Example: ``api.restore_agreement(agreement_id, "report received")``
        """
        body = body_of(wm.ReasonBody, reason=reason)
        self._call("POST", f"/v1/agreements/{agreement_id}/restore", json=body)

    def terminate_agreement(self, agreement_id: int, reason: str) -> list[str]:
        """The authority ends an agreement; returns what was disposed of.

        Example: ``api.terminate_agreement(agreement_id, "breach of terms")``
        """
        path = f"/v1/agreements/{agreement_id}/terminate"
        return self._json("POST", path, json=body_of(wm.ReasonBody, reason=reason))["disposed"]

    def expire_agreements(self, agreement_id: int | None = None) -> list[int]:
        """Expire the (or every) agreement whose term ended; returns the expired ids.

        Example: ``api.expire_agreements()``
        """
        body = body_of(wm.ExpireBody, agreement=agreement_id)
        return self._json("POST", "/v1/agreements/expire", json=body)["expired"]

    def rectify(self, agreement_id: int, notes: str) -> None:
        """The operator says what it did about a suspension.

        Example: ``api.rectify(agreement_id, "report filed")``
        """
        body = body_of(wm.RectifyBody, notes=notes)
        self._call("POST", f"/v1/agreements/{agreement_id}/rectify", json=body)

    # --- data requests and quality (Art. 14) ----------------------------------------------

    def request_data(
        self, agreement_id: int, dataset: str, *, purpose: str, columns: list[str] | None = None
    ) -> int:
        """The operator asks for a dataset under its agreement; returns the request id.

        Example: ``api.request_data(agreement_id, "persons", purpose="county credit")``
        """
        body = body_of(wm.DataRequestBody, dataset=dataset, purpose=purpose, columns=columns)
        return self._created(f"/v1/agreements/{agreement_id}/data-requests", body)

    def approve_request(self, request_id: int) -> int:
        """The provider (or authority) approves a data request; returns the grant id.

        Example: ``api.approve_request(request_id)``
        """
        return int(self._json("POST", f"/v1/data-requests/{request_id}/approve")["grant"])

    def refuse_request(self, request_id: int, reason: str) -> None:
        """The provider (or authority) refuses a data request, saying why.

        Example: ``api.refuse_request(request_id, "columns not needed for the purpose")``
        """
        body = body_of(wm.ReasonBody, reason=reason)
        self._call("POST", f"/v1/data-requests/{request_id}/refuse", json=body)

    def report_quality(self, dataset: str, text: str) -> int:
        """Report a data quality problem of a dataset; returns the ticket id.

        Example: ``api.report_quality("persons", "county codes missing")``
        """
        return self._created("/v1/quality-tickets", body_of(wm.QualityBody, dataset=dataset,
                                                            text=text))  # fmt: skip

    def answer_quality(self, ticket_id: int, text: str, version: int | None = None) -> None:
        """The provider answers a quality ticket, naming the fixed version if any.

        Example: ``api.answer_quality(ticket_id, "fixed", version=2)``
        """
        body = body_of(wm.AnswerBody, text=text, version=version)
        self._call("POST", f"/v1/quality-tickets/{ticket_id}/answer", json=body)

    # --- the providers' part (Art. 4, 13) --------------------------------------------------

    def data_uses(self) -> dict[str, list[dict[str, Any]]]:
        """A provider's datasets and the agreements, grants, jobs and products using them.

        Example: ``api.data_uses()["datasets"]``
        """
        return self._json("GET", "/v1/provider/uses")

    def countersign(self, agreement_id: int, dataset: str, terms: str) -> dict[str, Any]:
        """Sign the agreement for your dataset in its scope, with your terms (providers).

        Example: ``api.countersign(agreement_id, "persons", "county statistics only")``
        """
        path = f"/v1/agreements/{agreement_id}/countersignatures"
        body = body_of(wm.CountersignBody, dataset=dataset, terms=terms)
        return self._json("POST", path, json=body)

    def hold_use(self, action: str, agreement_id: int, dataset: str, reason: str) -> dict[str, Any]:
        """``action``: suspend, lift or terminate the use of your dataset under an agreement.

        Example: ``api.hold_use("suspend", agreement_id, "persons", "audit pending")``
        """
        path = f"/v1/agreements/{agreement_id}/datasets/{dataset}/{action}"
        return self._json("POST", path, json=body_of(wm.ReasonBody, reason=reason))

    # --- output review (Art. 15) -----------------------------------------------------------

    def appoint_checkers(
        self, checkers: list[str], *, agreement_id: int | None = None, job_id: int | None = None
    ) -> list[int]:
        """Two checkers for an agreement's held outputs, or for one job's.

        Example: ``api.appoint_checkers(["checker_wang", "checker_zhao"], job_id=job_id)``
        """
        body = body_of(wm.CheckersBody, checkers=checkers, agreement=agreement_id, job=job_id)
        return [int(i) for i in self._json("POST", "/v1/checkers", json=body)["appointments"]]

    def open_review(self, job_id: int) -> OutputReview:
        """Open the review of a withheld job if needed, and show it (votes sealed).

        Example: ``api.open_review(job_id).status``
        """
        return OutputReview.model_validate(self._json("POST", f"/v1/jobs/{job_id}/review/open"))

    def output_review(self, job_id: int) -> OutputReview:
        """The output review of a withheld job: its status and the votes in (sealed until the
        verdict).

        Example: ``api.output_review(job_id).votes_in``
        """
        return OutputReview.model_validate(self._json("GET", f"/v1/jobs/{job_id}/review"))

    def vote(self, job_id: int, decision: Vote | str, reason: str) -> OutputReview:
        """An output checker's vote on a withheld job: approve, return or reject, with a
        reason; returns the review as it stands after the vote.

        Example: ``api.vote(job_id, "approve", "cells checked")``
        """
        body = body_of(wm.VoteBody, decision=decision, reason=reason)
        return OutputReview.model_validate(
            self._json("POST", f"/v1/jobs/{job_id}/review", json=body)
        )

    def held_outputs(self) -> list[HeldOutputSummary]:
        """The held outputs you may review, each with its review's state and whether you
        voted (checkers, auditors, a covering authority).

        Example: ``[h["job"] for h in api.held_outputs() if not h["voted"]]``
        """
        return [HeldOutputSummary.model_validate(h) for h in self._json("GET", "/v1/held-outputs")]

    def held_output(self, job_id: int) -> HeldOutput:
        """A held output cell by cell, with its SQL, datasets, rules and review; never its
        author (appointed checkers, auditors, a covering authority).

        Example: ``api.held_output(job_id).columns``
        """
        return HeldOutput.model_validate(self._json("GET", f"/v1/jobs/{job_id}/review/output"))
