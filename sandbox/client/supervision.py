"""Supervision's calls of the HTTP client (Art. 15 to 24): evaluations and their
materials, inspections, trainings and drills, incidents, feedback and deliveries, usage
reports, and the paged lists (inbox, workflow lists, catalogue). Mixed into
:class:`sandbox.client.Client`; bodies and answers as in :mod:`sandbox.client.workflow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from policies.workflow import IncidentKind
from sandbox.api import workflow_models as wm
from sandbox.api.models import MATERIAL_NAME, MATERIAL_SHA256
from sandbox.client.envelope import body_of
from sandbox.client.results import CatalogueEntry, InboxItem, Page, Row


@dataclass(frozen=True)
class UsageReport:
    """An operator's usage report: the figures, and its files by name (JSON, CSV, PNG bytes)."""

    report: dict[str, Any]
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


@dataclass(frozen=True)
class MaterialFile:
    """A material's file as received: its id, name, SHA-256 (checked) and size."""

    id: int
    filename: str
    sha256: str
    bytes: int

    def __getitem__(self, name: str) -> Any:  # as the dict it was
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)


def _params(**given: Any) -> dict[str, Any]:
    """Query parameters: those given (None and empty ones left out, as the routes default)."""
    return {k: v for k, v in given.items() if v is not None and v != ""}


class SupervisionCalls:
    """One method per supervision route, with the route body's fields as keyword parameters."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def _created(self, path: str, body: dict[str, Any]) -> int:  # pragma: no cover - Workflow's
        raise NotImplementedError

    # --- evaluations (Art. 23) -------------------------------------------------------------

    def evaluate(
        self,
        agreement_id: int,
        *,
        passed: bool,
        notes: str,
        deadline: str | None = None,
        materials: list[int] | None = None,
        score: int | None = None,
    ) -> int:
        """The authority records an evaluation of an agreement's use, naming the materials
        it considered and a score from 0 to 100 if it gives one; returns its id.

        Example: ``api.evaluate(agreement_id, passed=True, notes="annual check", materials=[3])``
        """
        body = body_of(wm.EvaluationBody, passed=passed, notes=notes, deadline=deadline,
                       materials=list(materials or []), score=score)  # fmt: skip
        return self._created(f"/v1/agreements/{agreement_id}/evaluations", body)

    def evaluation(self, evaluation_id: int) -> dict[str, Any]:
        """An evaluation: its result, notes, score, figures and the materials it considered
        (its operator, the authorities covering it, auditors; Art. 23).

        Example: ``api.evaluation(evaluation_id)["score"]``
        """
        return self._json("GET", f"/v1/evaluations/{evaluation_id}")

    def submit_material(self, agreement_id: int, path: Path | str, title: str) -> dict[str, Any]:
        """Submit a file (a self-assessment, a security report ...) for the evaluation of
        your agreement (Art. 23); returns the material as kept, with its SHA-256.

        Example: ``api.submit_material(agreement_id, "self-assessment.pdf", "2026 review")``
        """
        source = Path(path)
        with open(source, "rb") as fh:
            files = {"file": (source.name, fh, "application/octet-stream")}
            data = {"agreement": str(agreement_id), "title": title}
            return self._json("POST", "/v1/evaluation-materials", data=data, files=files)

    def materials(self, agreement_id: int) -> list[dict[str, Any]]:
        """The materials submitted for an agreement's evaluations, oldest first.

        Example: ``[m["title"] for m in api.materials(agreement_id)]``
        """
        return self._json("GET", f"/v1/agreements/{agreement_id}/materials")

    def material_content(self, material_id: int) -> tuple[MaterialFile, bytes]:
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
        info = MaterialFile(material_id, unquote(response.headers[MATERIAL_NAME]), digest,
                            len(response.content))  # fmt: skip
        return info, response.content

    # --- inspections (Art. 22) -------------------------------------------------------------

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
        body = body_of(wm.InspectionBody, operator=operator, findings=list(findings),
                       tasks=list(tasks or []), deadline=deadline)  # fmt: skip
        return self._created("/v1/inspections", body)

    def inspections(self) -> list[dict[str, Any]]:
        """The inspections you may read, with their state and history (Art. 22).

        Example: ``[i["id"] for i in api.inspections() if i["state"] == "open"]``
        """
        return self._json("GET", "/v1/inspections")

    def inspection_step(self, action: str, inspection_id: int, notes: str) -> None:
        """``rectify`` (the inspected operator) or ``close`` (the inspector).

        Example: ``api.inspection_step("rectify", 3, "access logs now kept 180 days")``
        """
        body = body_of(wm.RectifyBody, notes=notes)
        self._call("POST", f"/v1/inspections/{inspection_id}/{action}", json=body)

    # --- trainings and drills (Art. 20, 21) --------------------------------------------------

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
        body = body_of(wm.DutyBody, kind=kind, held_on=held_on, topic=topic, attendees=attendees,
                       names=list(names or []), agreement=agreement_id)  # fmt: skip
        return self._created("/v1/security-records", body)

    def duties(self, operator: str | None = None) -> list[dict[str, Any]]:
        """The training and drill records you may read (optionally of one operator).

        Example: ``api.duties("lucheng_credit")``
        """
        return self._json("GET", "/v1/security-records", params=_params(operator=operator))

    # --- incidents, feedback, deliveries (Art. 15, 16, 21) -----------------------------------

    def report_incident(
        self,
        operator: str | None,
        kind: IncidentKind | str,
        description: str,
        *,
        product: str | None = None,
    ) -> dict[str, Any]:
        """Report a security incident about an operator (its data use is suspended), or, as
        a consumer, about a product that reached you (``product``; operator None).

        Example: ``api.report_incident("lucheng_credit", "leak", "a table left the sandbox")``
        """
        body = body_of(wm.IncidentBody, operator=operator, product=product, kind=kind,
                       description=description)  # fmt: skip
        return self._json("POST", "/v1/incidents", json=body)

    def file_plan(self, plan: str) -> int:
        """File your incident-response plan, as a consumer (Art. 21); returns its id.

        Example: ``api.file_plan("stop using the data; call the operator and the authority")``
        """
        return self._created("/v1/incident-plans", body_of(wm.PlanBody, plan=plan))

    def give_feedback(
        self, product_id: str, *, quality: int, use: int, effect: int, comment: str = ""
    ) -> int:
        """Feedback on a product delivered to you, on its three points (1 to 5 each,
        Art. 16); returns the feedback id.

        Example: ``api.give_feedback(product_id, quality=4, use=5, effect=3)``
        """
        body = body_of(wm.FeedbackBody, quality=quality, use=use, effect=effect, comment=comment)
        return self._created(f"/v1/products/{product_id}/feedback", body)

    def deliver_product(self, product_id: str, consumer: str, note: str = "") -> int:
        """Deliver your product to a named consumer (Art. 15); returns the delivery id.

        Example: ``api.deliver_product(job.product, "citizen_li", "the county table")``
        """
        body = body_of(wm.DeliveryBody, consumer=consumer, note=note)
        return self._created(f"/v1/products/{product_id}/deliveries", body)

    def usage_report(self, operator: str, period: str) -> UsageReport:
        """The report (recorded in the ledger on the server) with its three files.

        Example: ``api.usage_report("lucheng_credit", "2026-Q4").write("reports")``
        """
        import base64

        body = body_of(wm.UsageBody, operator=operator, period=period)
        answer = self._json("POST", "/v1/usage-reports", json=body)
        files = {name: base64.b64decode(data) for name, data in answer["files"].items()}
        return UsageReport(report=answer["report"], files=files)

    # --- pages: inbox, workflow lists, catalogue (Art. 17, 24) -------------------------------

    def inbox(
        self, *, limit: int = 50, before: int | None = None, kind: str | None = None
    ) -> Page[InboxItem]:
        """One page of your inbox, newest first: items, total, next_before (the next page's
        ``before``; None on the last page).

        Example: ``[item.subject for item in api.inbox(limit=20).items]``
        """
        params = _params(limit=limit, before=before, kind=kind)
        return Page[InboxItem].model_validate(self._json("GET", "/v1/inbox", params=params))

    def list_workflow(
        self,
        kind: str,
        *,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
        open_only: bool = False,
    ) -> Page[Row]:
        """A page of ``kind`` (notices, applications, agreements, requests, tickets, reviews,
        evaluations, incidents, plans) you may see, newest first: items (each its ``id``
        and the kind's columns), total, next_before.

        Example: ``[a["id"] for a in api.list_workflow("agreements", status="active").items]``
        """
        params = {"open": open_only, **_params(limit=limit, before=before, status=status)}
        return Page[Row].model_validate(self._json("GET", f"/v1/workflow/{kind}", params=params))

    def catalogue(self, *, limit: int = 50, before: str | None = None) -> Page[CatalogueEntry]:
        """A page of the catalogue of released products (Art. 17), newest first: items
        (id, kind, title, operator, datasets, released_at), total, next_before.

        Example: ``[entry.title for entry in api.catalogue(limit=20).items]``
        """
        params = _params(limit=limit, before=before)
        return Page[CatalogueEntry].model_validate(
            self._json("GET", "/v1/catalogue", params=params)
        )
