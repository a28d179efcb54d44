"""The workflow's calls of the HTTP client (Art. 9 to 24): notices, applications,
reviews, agreements, data requests, supervision, output review. Mixed into
:class:`sandbox.client.Client`, whose ``_json`` sends each request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


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
        min_reviewers]"""
        return self._json("POST", "/v1/notices", json=fields)["id"]

    def apply(self, notice_id: int, **fields: Any) -> int:
        """scenario, datasets ({name: columns or None}), security_measures, security_officer,
        incident_plan[, job_kinds, product_kinds]"""
        return self._json("POST", f"/v1/notices/{notice_id}/applications", json=fields)["id"]

    def appoint_reviewers(self, application_id: int, reviewers: list[str]) -> list[int]:
        path = f"/v1/applications/{application_id}/reviewers"
        return self._json("POST", path, json={"reviewers": reviewers})["reviews"]

    def score(
        self, application_id: int, *, capability: int, scenario: int, security: int, comment=""
    ) -> str:
        body = dict(capability=capability, scenario=scenario, security=security, comment=comment)
        return self._json("POST", f"/v1/applications/{application_id}/scores", json=body)["state"]

    def reviews(self, application_id: int) -> list[dict]:
        return self._json("GET", f"/v1/applications/{application_id}/reviews")

    def sign_agreement(self, application_id: int, **fields: Any) -> int:
        """valid_from, valid_until, rights_duties, security_requirements, exit_conditions,
        breach_liability, disposal ('delete' or 'hand_over')[, review_required, disclosure,
        aggregates]"""
        path = f"/v1/applications/{application_id}/agreement"
        return self._json("POST", path, json=fields)["id"]

    def agreement(self, agreement_id: int) -> dict:
        return self._json("GET", f"/v1/agreements/{agreement_id}")

    def suspend_agreement(self, agreement_id: int, reason: str, deadline: str | None = None):
        body = {"reason": reason, "deadline": deadline}
        self._call("POST", f"/v1/agreements/{agreement_id}/suspend", json=body)

    def restore_agreement(self, agreement_id: int, reason: str) -> None:
        self._call("POST", f"/v1/agreements/{agreement_id}/restore", json={"reason": reason})

    def terminate_agreement(self, agreement_id: int, reason: str) -> list[str]:
        path = f"/v1/agreements/{agreement_id}/terminate"
        return self._json("POST", path, json={"reason": reason})["disposed"]

    def evaluate(self, agreement_id: int, *, passed: bool, notes: str, deadline=None) -> int:
        body = {"passed": passed, "notes": notes, "deadline": deadline}
        return self._json("POST", f"/v1/agreements/{agreement_id}/evaluations", json=body)["id"]

    def request_data(
        self, agreement_id: int, dataset: str, *, purpose: str, columns: list[str] | None = None
    ) -> int:
        body = {"dataset": dataset, "purpose": purpose, "columns": columns}
        return self._json("POST", f"/v1/agreements/{agreement_id}/data-requests", json=body)["id"]

    def approve_request(self, request_id: int) -> int:
        return self._json("POST", f"/v1/data-requests/{request_id}/approve")["grant"]

    def refuse_request(self, request_id: int, reason: str) -> None:
        self._call("POST", f"/v1/data-requests/{request_id}/refuse", json={"reason": reason})

    def output_review(self, job_id: int) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}/review")

    def vote(self, job_id: int, decision: str, reason: str) -> dict:
        body = {"decision": decision, "reason": reason}
        return self._json("POST", f"/v1/jobs/{job_id}/review", json=body)

    def give_feedback(self, product_id: str, rating: int, comment: str = "") -> int:
        body = {"rating": rating, "comment": comment}
        return self._json("POST", f"/v1/products/{product_id}/feedback", json=body)["id"]

    def report_incident(self, operator: str, kind: str, description: str) -> dict:
        body = {"operator": operator, "kind": kind, "description": description}
        return self._json("POST", "/v1/incidents", json=body)

    def inbox(self, *, limit: int = 50, before: int | None = None, kind: str | None = None) -> dict:
        """One page of your inbox, newest first: items, total, next_before (the next page's
        ``before``; None on the last page)."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if kind:
            params["kind"] = kind
        return self._json("GET", "/v1/inbox", params=params)

    def data_uses(self) -> dict:
        """A provider's datasets and the agreements, grants, jobs and products using them."""
        return self._json("GET", "/v1/provider/uses")

    def hold_use(self, action: str, agreement_id: int, dataset: str, reason: str) -> dict:
        """``action``: suspend, lift or terminate the use of your dataset under an agreement."""
        path = f"/v1/agreements/{agreement_id}/datasets/{dataset}/{action}"
        return self._json("POST", path, json={"reason": reason})

    def notice(self, notice_id: int) -> dict:
        return self._json("GET", f"/v1/notices/{notice_id}")

    def application(self, application_id: int) -> dict:
        """The applicant, the notice's authority, appointed reviewers and auditors may read it."""
        return self._json("GET", f"/v1/applications/{application_id}")

    def expire_agreements(self, agreement_id: int | None = None) -> list[int]:
        """Expire the (or every) agreement whose term ended; returns the expired ids."""
        return self._json("POST", "/v1/agreements/expire", json={"agreement": agreement_id})[
            "expired"
        ]

    def rectify(self, agreement_id: int, notes: str) -> None:
        self._call("POST", f"/v1/agreements/{agreement_id}/rectify", json={"notes": notes})

    def inspect(
        self,
        operator: str,
        findings: list[str],
        tasks: list[str] | None = None,
        deadline: str | None = None,
    ) -> int:
        body = {
            "operator": operator,
            "findings": list(findings),
            "tasks": list(tasks or []),
            "deadline": deadline,
        }
        return self._json("POST", "/v1/inspections", json=body)["id"]

    def report_quality(self, dataset: str, text: str) -> int:
        body = {"dataset": dataset, "text": text}
        return self._json("POST", "/v1/quality-tickets", json=body)["id"]

    def answer_quality(self, ticket_id: int, text: str, version: int | None = None) -> None:
        body = {"text": text, "version": version}
        self._call("POST", f"/v1/quality-tickets/{ticket_id}/answer", json=body)

    def usage_report(self, operator: str, period: str) -> UsageReport:
        """The report (recorded in the ledger on the server) with its three files."""
        import base64

        body = {"operator": operator, "period": period}
        body = self._json("POST", "/v1/usage-reports", json=body)
        files = {name: base64.b64decode(data) for name, data in body["files"].items()}
        return UsageReport(report=body["report"], files=files)

    def appoint_checkers(
        self, checkers: list[str], *, agreement_id: int | None = None, job_id: int | None = None
    ) -> list[int]:
        """Two checkers for an agreement's held outputs, or for one job's."""
        body = {"checkers": list(checkers), "agreement": agreement_id, "job": job_id}
        return self._json("POST", "/v1/checkers", json=body)["appointments"]

    def open_review(self, job_id: int) -> dict:
        """Open the review of a withheld job if needed, and show it (votes sealed)."""
        return self._json("POST", f"/v1/jobs/{job_id}/review/open")
