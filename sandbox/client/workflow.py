"""The workflow's calls of the HTTP client (Art. 9 to 24): notices, applications,
reviews, agreements, data requests, supervision, output review. Mixed into
:class:`sandbox.client.Client`, whose ``_json`` sends each request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox.api.models import MATERIAL_NAME, MATERIAL_SHA256


@dataclass(frozen=True)
class UsageReport:
    """An operator's usage report: the figures, and its files by name (JSON, CSV, PNG bytes)."""

    report: dict
    files: dict[str, bytes]

    def write(self, out: Path | str) -> dict[str, str]:
        """Save the files into folder ``out``; returns name -> path, as the host's report does."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, content in self.files.items():
            (folder / Path(name).name).write_bytes(content)
            paths[name] = str(folder / Path(name).name)
        return paths


class WorkflowCalls:
    """One method per workflow route; every one returns the route's JSON."""

    # Sent by the Client (the mixin's methods build requests only).
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def publish_notice(self, **fields: Any) -> int:
        """title, domain, scenario, datasets, conditions, deadline[, jurisdiction, min_score,
        min_reviewers]

        Example: ``api.publish_notice(title="Credit scoring", domain="finance",
        scenario="county credit", datasets=["persons"], conditions="aggregates only",
        deadline=deadline)``
        """
        return self._json("POST", "/v1/notices", json=fields)["id"]

    def apply(self, notice_id: int, **fields: Any) -> int:
        """scenario, datasets ({name: columns or None}), security_measures, security_officer,
        incident_plan[, job_kinds, product_kinds]

        Example: ``api.apply(notice_id, scenario="county credit", datasets={"persons": None},
        security_measures="...", security_officer="Li", incident_plan="...")``
        """
        return self._json("POST", f"/v1/notices/{notice_id}/applications", json=fields)["id"]

    def appoint_reviewers(self, application_id: int, reviewers: list[str]) -> list[int]:
        """The authority appoints reviewers of an application; returns the review ids.

        Example: ``api.appoint_reviewers(application_id, ["prof_sun", "prof_qian"])``
        """
        path = f"/v1/applications/{application_id}/reviewers"
        return self._json("POST", path, json={"reviewers": reviewers})["reviews"]

    def score(
        self, application_id: int, *, capability: int, scenario: int, security: int, comment=""
    ) -> str:
        """A reviewer scores an application (each score 0 to 100); returns its state.

        Example: ``api.score(application_id, capability=80, scenario=75, security=90)``
        """
        body = dict(capability=capability, scenario=scenario, security=security, comment=comment)
        return self._json("POST", f"/v1/applications/{application_id}/scores", json=body)["state"]

    def reviews(self, application_id: int) -> list[dict]:
        """The reviews of an application, each with its scores.

        Example: ``[r["reviewer"] for r in api.reviews(application_id)]``
        """
        return self._json("GET", f"/v1/applications/{application_id}/reviews")

    def sign_agreement(self, application_id: int, **fields: Any) -> int:
        """valid_from, valid_until, rights_duties, security_requirements, exit_conditions,
        breach_liability, disposal ('delete' or 'hand_over')[, review_required, disclosure,
        aggregates, report_every, training_every, drill_every, evaluate_every]

        Example: ``api.sign_agreement(application_id, valid_from=start, valid_until=end,
        rights_duties="...", security_requirements="...", exit_conditions="...",
        breach_liability="...", disposal="delete")``
        """
        path = f"/v1/applications/{application_id}/agreement"
        return self._json("POST", path, json=fields)["id"]

    def agreement(self, agreement_id: int) -> dict:
        """An agreement: its terms, state and datasets.

        Example: ``api.agreement(agreement_id)["status"]``
        """
        return self._json("GET", f"/v1/agreements/{agreement_id}")

    def set_schedules(
        self,
        agreement_id: int,
        *,
        training: str | None = None,
        drill: str | None = None,
        evaluation: str | None = None,
    ) -> dict:
        """Set or change how often trainings (Art. 20), drills (Art. 21) and evaluations
        (Art. 23) fall due under an agreement (month, quarter or year; None: unchanged);
        returns its schedules with what is due and missing.

        Example: ``api.set_schedules(agreement_id, training="quarter", evaluation="year")``
        """
        body = {"training": training, "drill": drill, "evaluation": evaluation}
        return self._json("POST", f"/v1/agreements/{agreement_id}/schedules", json=body)

    def suspend_agreement(self, agreement_id: int, reason: str, deadline: str | None = None):
        """The authority suspends an agreement (its grants stop) until a deadline to rectify.

        Example: ``api.suspend_agreement(agreement_id, "late security report", deadline)``
        """
        body = {"reason": reason, "deadline": deadline}
        self._call("POST", f"/v1/agreements/{agreement_id}/suspend", json=body)

    def restore_agreement(self, agreement_id: int, reason: str) -> None:
        """The authority restores a suspended agreement.

        Example: ``api.restore_agreement(agreement_id, "report received")``
        """
        self._call("POST", f"/v1/agreements/{agreement_id}/restore", json={"reason": reason})

    def terminate_agreement(self, agreement_id: int, reason: str) -> list[str]:
        """The authority ends an agreement; returns what was disposed of.

        Example: ``api.terminate_agreement(agreement_id, "breach of terms")``
        """
        path = f"/v1/agreements/{agreement_id}/terminate"
        return self._json("POST", path, json={"reason": reason})["disposed"]

    def evaluate(
        self,
        agreement_id: int,
        *,
        passed: bool,
        notes: str,
        deadline=None,
        materials: list[int] | None = None,
        score: int | None = None,
    ) -> int:
        """The authority records an evaluation of an agreement's use, naming the materials
        it considered and a score from 0 to 100 if it gives one; returns its id.

        Example: ``api.evaluate(agreement_id, passed=True, notes="annual check", materials=[3])``
        """
        body = {"passed": passed, "notes": notes, "deadline": deadline,
                "materials": list(materials or []), "score": score}  # fmt: skip
        return self._json("POST", f"/v1/agreements/{agreement_id}/evaluations", json=body)["id"]

    def request_data(
        self, agreement_id: int, dataset: str, *, purpose: str, columns: list[str] | None = None
    ) -> int:
        """The operator asks for a dataset under its agreement; returns the request id.

        Example: ``api.request_data(agreement_id, "persons", purpose="county credit")``
        """
        body = {"dataset": dataset, "purpose": purpose, "columns": columns}
        return self._json("POST", f"/v1/agreements/{agreement_id}/data-requests", json=body)["id"]

    def approve_request(self, request_id: int) -> int:
        """The provider (or authority) approves a data request; returns the grant id.

        Example: ``api.approve_request(request_id)``
        """
        return self._json("POST", f"/v1/data-requests/{request_id}/approve")["grant"]

    def refuse_request(self, request_id: int, reason: str) -> None:
        """The provider (or authority) refuses a data request, saying why.

        Example: ``api.refuse_request(request_id, "columns not needed for the purpose")``
        """
        self._call("POST", f"/v1/data-requests/{request_id}/refuse", json={"reason": reason})

    def output_review(self, job_id: int) -> dict:
        """The output review of a withheld job: its status and the votes in (sealed until the
        verdict).

        Example: ``api.output_review(job_id)["votes_in"]``
        """
        return self._json("GET", f"/v1/jobs/{job_id}/review")

    def vote(self, job_id: int, decision: str, reason: str) -> dict:
        """An output checker's vote on a withheld job: approve or reject, with a reason.

        Example: ``api.vote(job_id, "approve", "cells checked")``
        """
        body = {"decision": decision, "reason": reason}
        return self._json("POST", f"/v1/jobs/{job_id}/review", json=body)

    def give_feedback(
        self, product_id: str, *, quality: int, use: int, effect: int, comment: str = ""
    ) -> int:
        """Feedback on a product delivered to you, on its three points (1 to 5 each,
        Art. 16); returns the feedback id.

        Example: ``api.give_feedback(product_id, quality=4, use=5, effect=3)``
        """
        body = {"quality": quality, "use": use, "effect": effect, "comment": comment}
        return self._json("POST", f"/v1/products/{product_id}/feedback", json=body)["id"]

    def deliver_product(self, product_id: str, consumer: str, note: str = "") -> int:
        """Deliver your product to a named consumer (Art. 15); returns the delivery id.

        Example: ``api.deliver_product(job.product, "citizen_li", "the county table")``
        """
        body = {"consumer": consumer, "note": note}
        return self._json("POST", f"/v1/products/{product_id}/deliveries", json=body)["id"]

    def report_incident(
        self, operator: str | None, kind: str, description: str, *, product: str | None = None
    ) -> dict:
        """Report a security incident about an operator (its data use is suspended), or, as
        a consumer, about a product that reached you (``product``; operator None).

        Example: ``api.report_incident("lucheng_credit", "leak", "a table left the sandbox")``
        """
        body = {"operator": operator, "product": product, "kind": kind,
                "description": description}  # fmt: skip
        return self._json("POST", "/v1/incidents", json=body)

    def file_plan(self, plan: str) -> int:
        """File your incident-response plan, as a consumer (Art. 21); returns its id.

        Example: ``api.file_plan("stop using the data; call the operator and the authority")``
        """
        return self._json("POST", "/v1/incident-plans", json={"plan": plan})["id"]

    def inbox(self, *, limit: int = 50, before: int | None = None, kind: str | None = None) -> dict:
        """One page of your inbox, newest first: items, total, next_before (the next page's
        ``before``; None on the last page).

        Example: ``api.inbox(limit=20)["items"]``
        """
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if kind:
            params["kind"] = kind
        return self._json("GET", "/v1/inbox", params=params)

    def list_workflow(
        self,
        kind: str,
        *,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
        open_only: bool = False,
    ) -> dict:
        """A page of ``kind`` (notices, applications, agreements, requests, tickets, reviews,
        evaluations, incidents) you may see, newest first: items, total, next_before.

        Example: ``api.list_workflow("agreements", status="active", limit=20)["items"]``
        """
        params: dict[str, Any] = {"limit": limit, "open": open_only}
        if before is not None:
            params["before"] = before
        if status:
            params["status"] = status
        return self._json("GET", f"/v1/workflow/{kind}", params=params)

    def catalogue(self, *, limit: int = 50, before: str | None = None) -> dict:
        """A page of the catalogue of released products (Art. 17), newest first: items
        (id, kind, title, operator, datasets, released_at), total, next_before.

        Example: ``api.catalogue(limit=20)["items"]``
        """
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self._json("GET", "/v1/catalogue", params=params)

    def record_duty(
        self,
        kind: str,
        *,
        held_on: str,
        topic: str,
        attendees: int,
        names: list[str] | None = None,
        agreement_id: int | None = None,
    ) -> int:
        """Record a staff training (Art. 20) or an emergency drill (Art. 21) you held.

        Example: ``api.record_duty("training", held_on="2026-11-20", topic="data handling",
        attendees=12)``
        """
        body = {"kind": kind, "held_on": held_on, "topic": topic, "attendees": attendees,
                "names": names or [], "agreement": agreement_id}  # fmt: skip
        return self._json("POST", "/v1/security-records", json=body)["id"]

    def duties(self, operator: str | None = None) -> list[dict]:
        """The training and drill records you may read (optionally of one operator).

        Example: ``api.duties("lucheng_credit")``
        """
        params = {"operator": operator} if operator else {}
        return self._json("GET", "/v1/security-records", params=params)

    def evaluation(self, evaluation_id: int) -> dict:
        """An evaluation: its result, notes, score, figures and the materials it considered
        (its operator, the authorities covering it, auditors; Art. 23).

        Example: ``api.evaluation(evaluation_id)["score"]``
        """
        return self._json("GET", f"/v1/evaluations/{evaluation_id}")

    def submit_material(self, agreement_id: int, path: Path | str, title: str) -> dict:
        """Submit a file (a self-assessment, a security report ...) for the evaluation of
        your agreement (Art. 23); returns the material as kept, with its SHA-256.

        Example: ``api.submit_material(agreement_id, "self-assessment.pdf", "2026 review")``
        """
        source = Path(path)
        with open(source, "rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            data = {"agreement": str(agreement_id), "title": title}
            return self._json("POST", "/v1/evaluation-materials", data=data, files=files)

    def materials(self, agreement_id: int) -> list[dict]:
        """The materials submitted for an agreement's evaluations, oldest first.

        Example: ``[m["title"] for m in api.materials(agreement_id)]``
        """
        return self._json("GET", f"/v1/agreements/{agreement_id}/materials")

    def material_content(self, material_id: int) -> tuple[dict, bytes]:
        """A material's file: (id, filename, sha256, bytes) and its content, checked
        against the SHA-256 the platform recorded.

        Example: ``info, data = api.material_content(material_id)``
        """
        import hashlib
        from urllib.parse import unquote

        from policies.errors import IntegrityError

        response = self._call("GET", f"/v1/evaluation-materials/{material_id}")
        digest = response.headers.get(MATERIAL_SHA256, "")
        if hashlib.sha256(response.content).hexdigest() != digest:
            raise IntegrityError(f"material {material_id}: the file received does not match "
                                 "its recorded SHA-256")  # fmt: skip
        info = {"id": material_id, "filename": unquote(response.headers[MATERIAL_NAME]),
                "sha256": digest, "bytes": len(response.content)}  # fmt: skip
        return info, response.content

    def inspections(self) -> list[dict]:
        """The inspections you may read, with their state and history (Art. 22).

        Example: ``[i["id"] for i in api.inspections() if i["state"] == "open"]``
        """
        return self._json("GET", "/v1/inspections")

    def inspection_step(self, action: str, inspection_id: int, notes: str) -> None:
        """``rectify`` (the inspected operator) or ``close`` (the inspector).

        Example: ``api.inspection_step("rectify", 3, "access logs now kept 180 days")``
        """
        self._call("POST", f"/v1/inspections/{inspection_id}/{action}", json={"notes": notes})

    def data_uses(self) -> dict:
        """A provider's datasets and the agreements, grants, jobs and products using them.

        Example: ``api.data_uses()["datasets"]``
        """
        return self._json("GET", "/v1/provider/uses")

    def countersign(self, agreement_id: int, dataset: str, terms: str) -> dict:
        """Sign the agreement for your dataset in its scope, with your terms (providers).

        Example: ``api.countersign(agreement_id, "persons", "county statistics only")``
        """
        path = f"/v1/agreements/{agreement_id}/countersignatures"
        return self._json("POST", path, json={"dataset": dataset, "terms": terms})

    def hold_use(self, action: str, agreement_id: int, dataset: str, reason: str) -> dict:
        """``action``: suspend, lift or terminate the use of your dataset under an agreement.

        Example: ``api.hold_use("suspend", agreement_id, "persons", "audit pending")``
        """
        path = f"/v1/agreements/{agreement_id}/datasets/{dataset}/{action}"
        return self._json("POST", path, json={"reason": reason})

    def notice(self, notice_id: int) -> dict:
        """A published call for applications.

        Example: ``api.notice(notice_id)["title"]``
        """
        return self._json("GET", f"/v1/notices/{notice_id}")

    def application(self, application_id: int) -> dict:
        """The applicant, the notice's authority, appointed reviewers and auditors may read it.

        Example: ``api.application(application_id)["scenario"]``
        """
        return self._json("GET", f"/v1/applications/{application_id}")

    def expire_agreements(self, agreement_id: int | None = None) -> list[int]:
        """Expire the (or every) agreement whose term ended; returns the expired ids.

        Example: ``api.expire_agreements()``
        """
        return self._json("POST", "/v1/agreements/expire", json={"agreement": agreement_id})[
            "expired"
        ]

    def rectify(self, agreement_id: int, notes: str) -> None:
        """The operator says what it did about a suspension.

        Example: ``api.rectify(agreement_id, "report filed")``
        """
        self._call("POST", f"/v1/agreements/{agreement_id}/rectify", json={"notes": notes})

    def inspect(
        self,
        operator: str,
        findings: list[str],
        tasks: list[str] | None = None,
        deadline: str | None = None,
    ) -> int:
        """The authority records an inspection of an operator; returns its id.

        Example: ``api.inspect("lucheng_credit", ["logs kept"], tasks=["rotate keys"])``
        """
        body = {
            "operator": operator,
            "findings": list(findings),
            "tasks": list(tasks or []),
            "deadline": deadline,
        }
        return self._json("POST", "/v1/inspections", json=body)["id"]

    def report_quality(self, dataset: str, text: str) -> int:
        """Report a data quality problem of a dataset; returns the ticket id.

        Example: ``api.report_quality("persons", "county codes missing")``
        """
        body = {"dataset": dataset, "text": text}
        return self._json("POST", "/v1/quality-tickets", json=body)["id"]

    def answer_quality(self, ticket_id: int, text: str, version: int | None = None) -> None:
        """The provider answers a quality ticket, naming the fixed version if any.

        Example: ``api.answer_quality(ticket_id, "fixed", version=2)``
        """
        body = {"text": text, "version": version}
        self._call("POST", f"/v1/quality-tickets/{ticket_id}/answer", json=body)

    def usage_report(self, operator: str, period: str) -> UsageReport:
        """The report (recorded in the ledger on the server) with its three files.

        Example: ``api.usage_report("lucheng_credit", "2026-Q4").write("reports")``
        """
        import base64

        body = {"operator": operator, "period": period}
        body = self._json("POST", "/v1/usage-reports", json=body)
        files = {name: base64.b64decode(data) for name, data in body["files"].items()}
        return UsageReport(report=body["report"], files=files)

    def appoint_checkers(
        self, checkers: list[str], *, agreement_id: int | None = None, job_id: int | None = None
    ) -> list[int]:
        """Two checkers for an agreement's held outputs, or for one job's.

        Example: ``api.appoint_checkers(["checker_wang", "checker_zhao"], job_id=job_id)``
        """
        body = {"checkers": list(checkers), "agreement": agreement_id, "job": job_id}
        return self._json("POST", "/v1/checkers", json=body)["appointments"]

    def open_review(self, job_id: int) -> dict:
        """Open the review of a withheld job if needed, and show it (votes sealed).

        Example: ``api.open_review(job_id)["status"]``
        """
        return self._json("POST", f"/v1/jobs/{job_id}/review/open")
