"""What a command asks of the platform, written once for both ways of reaching it.

:class:`Backend` names every call the commands make. :class:`sandbox.cli.local.LocalBackend`
answers on the platform's host, calling the domain functions in-process on ``--home``;
:class:`sandbox.cli.remote.RemoteBackend` answers through :class:`sandbox.client.Client`
behind ``--server``. :meth:`sandbox.cli.common.Context.backend` picks one, and it is the
only place that looks at ``--server``: a command parses its options, calls its backend
and prints what comes back.

Both answer with the same plain data (the dicts and lists the ``--json`` output prints),
so a command's text and JSON are built in one place. The exceptions are results that are
objects on both sides already: :meth:`Backend.he_sum` returns the client's
:class:`sandbox.client.he.HeResult` either way, and :meth:`Backend.get_product` the folder
it filled. Host-level commands (``init``, ``principal``, ``settings``, ``backup`` ...)
have no call here: they use :attr:`sandbox.cli.common.Context.platform`, which refuses
``--server`` with a clear message.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[..., None]


class Backend(abc.ABC):
    """The platform as the command line sees it; one method per call a command makes."""

    # --- datasets and grants ------------------------------------------------------------

    @abc.abstractmethod
    def register_dataset(
        self, name: str, source: str, classification_path: Path, classification, progress: Progress
    ) -> dict:
        """dataset, version, changed, rows, sha256 of the (new or kept) version."""

    @abc.abstractmethod
    def list_datasets(self) -> list[dict]:
        """The datasets and their latest versions."""

    @abc.abstractmethod
    def show_dataset(self, name: str, version: int | None) -> dict:
        """dataset, version, sha256, rows, classification, profile (None when withheld)."""

    @abc.abstractmethod
    def suggest_classification(self, source: str, rows: int | None) -> dict:
        """A proposed classification of a source: classification, evidence, notes, yaml."""

    @abc.abstractmethod
    def refresh_dataset(self, name: str) -> dict:
        """Pull a dataset from its source again: dataset, version, changed, rows, sha256."""

    @abc.abstractmethod
    def schedule_refresh(self, name: str, daily_at: str | None) -> dict:
        """Set or clear a dataset's daily pull: dataset, daily_at, timezone."""

    @abc.abstractmethod
    def list_sources(self) -> list[dict]:
        """The provider's datasets with a source to pull again, their schedules, last pulls."""

    @abc.abstractmethod
    def list_grants(self) -> list[dict]:
        """The grants the principal may see."""

    # --- jobs, products, ledger ------------------------------------------------------------

    @abc.abstractmethod
    def submit_job(self, sql: str) -> dict:
        """Run an SQL aggregate job to its end: job, state, reason, report, product."""

    @abc.abstractmethod
    def job(self, job_id: int) -> dict:
        """job, state, reason, report, product of one job."""

    @abc.abstractmethod
    def list_jobs(self) -> list[dict]:
        """The principal's jobs (all of them for authorities and auditors)."""

    @abc.abstractmethod
    def list_products(self) -> list[dict]:
        """The products the principal may download."""

    @abc.abstractmethod
    def get_product(self, product_id: str, out: Path) -> Path:
        """Copy a product into ``out/<id>``; returns that folder."""

    @abc.abstractmethod
    def verify_ledger(self) -> dict:
        """entries, head_seq, head_hash of a ledger whose chain and signed head hold."""

    @abc.abstractmethod
    def ledger(self, **filters: Any) -> list[dict]:
        """Entries by actor, subject, action, since, until, limit."""

    # --- principals' lifecycle (Art. 5) -------------------------------------------------

    @abc.abstractmethod
    def deactivate_principal(self, name: str, reason: str) -> dict:
        """name, role, jurisdiction, status of a principal now deactivated."""

    @abc.abstractmethod
    def reactivate_principal(self, name: str, reason: str) -> dict:
        """name, role, jurisdiction, status of a principal now active again."""

    @abc.abstractmethod
    def rotate_token(self, name: str) -> dict:
        """name, role, jurisdiction, status and the new token (shown once)."""

    # --- notices, applications, reviews (Art. 10 to 12) -------------------------------------

    @abc.abstractmethod
    def publish_notice(
        self, fields: dict[str, Any], pass_score: int, min_reviewers: int, aggregate: str
    ) -> dict:
        """Publish a notice; returns it as :meth:`notice` shows it."""

    @abc.abstractmethod
    def notice(self, notice_id: int) -> dict:
        """A notice."""

    @abc.abstractmethod
    def apply(self, notice_id: int, **fields: Any) -> int:
        """The new application's id."""

    @abc.abstractmethod
    def application(self, application_id: int) -> dict:
        """An application, to those who may read it."""

    @abc.abstractmethod
    def appoint_reviewers(self, application_id: int, reviewers: list[str]) -> list[int]:
        """The ids of the appointments."""

    @abc.abstractmethod
    def score(
        self, application_id: int, *, capability: int, scenario: int, security: int, comment: str
    ) -> str:
        """The application's status after the score."""

    @abc.abstractmethod
    def reviews(self, application_id: int) -> list[dict]:
        """The reviewers of an application and their scores."""

    # --- agreements (Art. 13, 24) ------------------------------------------------------

    @abc.abstractmethod
    def sign_agreement(self, application_id: int, *, disposal: str, **terms: Any) -> int:
        """The new agreement's id."""

    @abc.abstractmethod
    def agreement(self, agreement_id: int) -> dict:
        """Every field of an agreement."""

    @abc.abstractmethod
    def set_schedules(self, agreement_id: int, everies: dict[str, str | None]) -> dict:
        """Set or change how often trainings, drills and evaluations fall due (training,
        drill, evaluation: month, quarter, year or None); the agreement's schedules."""

    @abc.abstractmethod
    def suspend_agreement(self, agreement_id: int, reason: str) -> None:
        """Suspend data use under an agreement."""

    @abc.abstractmethod
    def restore_agreement(self, agreement_id: int, reason: str) -> None:
        """Restore a suspended agreement."""

    @abc.abstractmethod
    def terminate_agreement(self, agreement_id: int, reason: str) -> None:
        """Terminate a suspended agreement."""

    @abc.abstractmethod
    def expire_agreements(self, agreement_id: int | None) -> list[int]:
        """The ids of the agreements expired now."""

    # --- requests and quality (Art. 14) ---------------------------------------------------

    @abc.abstractmethod
    def request_data(
        self, agreement_id: int, dataset: str, *, purpose: str, columns: list[str] | None
    ) -> int:
        """The new data request's id."""

    @abc.abstractmethod
    def approve_request(self, request_id: int) -> int:
        """The grant the approval created."""

    @abc.abstractmethod
    def refuse_request(self, request_id: int, reason: str) -> None:
        """Refuse a data request."""

    @abc.abstractmethod
    def report_quality(self, dataset: str, text: str) -> int:
        """The new quality ticket's id."""

    @abc.abstractmethod
    def answer_quality(self, ticket_id: int, text: str, version: int | None) -> None:
        """Answer a quality ticket."""

    # --- supervision, feedback, usage (Art. 16, 21 to 24) -----------------------------------

    @abc.abstractmethod
    def evaluate(
        self,
        agreement_id: int,
        *,
        passed: bool,
        notes: str,
        deadline: str | None,
        materials: list[int],
        score: int | None,
    ) -> int:
        """The new evaluation's id (materials: the ids it considered; score: 0 to 100)."""

    @abc.abstractmethod
    def evaluation(self, evaluation_id: int) -> dict:
        """An evaluation: result, notes, score, figures and the materials it considered."""

    @abc.abstractmethod
    def submit_material(self, agreement_id: int, path: Path, title: str) -> dict:
        """The operator's evaluation material, kept: id, title, filename, sha256, bytes ..."""

    @abc.abstractmethod
    def materials(self, agreement_id: int) -> list[dict]:
        """The materials submitted for an agreement's evaluations."""

    @abc.abstractmethod
    def download_material(self, material_id: int, out: Path) -> dict:
        """Save a material as ``out/<its file name>``: material, path, sha256, bytes."""

    @abc.abstractmethod
    def rectify(self, agreement_id: int, notes: str) -> None:
        """Accept a rectification."""

    @abc.abstractmethod
    def report_incident(
        self, operator: str | None, kind: str, description: str, product: str | None
    ) -> dict:
        """incident, suspended, notified (``operator``, or a consumer's ``product``)."""

    @abc.abstractmethod
    def file_plan(self, plan: str) -> int:
        """The id of the consumer's incident-response plan just filed (Art. 21)."""

    @abc.abstractmethod
    def inspect(
        self, operator: str, findings: list[str], tasks: list[str], deadline: str | None
    ) -> int:
        """The new inspection's id."""

    @abc.abstractmethod
    def inbox(self, limit: int, before: int | None, kind: str | None) -> dict:
        """One page of the principal's inbox: items (newest first), total, next_before."""

    @abc.abstractmethod
    def list_workflow(self, kind: str, **filters: Any) -> dict:
        """A page of notices, applications, agreements, requests, tickets, reviews,
        evaluations, incidents or plans (limit, before, status, open_only): items, total,
        next_before."""

    @abc.abstractmethod
    def catalogue(self, limit: int, before: str | None) -> dict:
        """A page of the catalogue of released products (Art. 17), newest first: items
        (id, kind, title, operator, datasets, released_at), total, next_before."""

    @abc.abstractmethod
    def record_duty(self, kind: str, fields: dict[str, Any]) -> int:
        """The new training or drill record's id (held_on, topic, attendees, names, agreement_id)."""

    @abc.abstractmethod
    def duties(self, operator: str | None) -> list[dict]:
        """The training and drill records the principal may read."""

    @abc.abstractmethod
    def inspections(self) -> list[dict]:
        """The inspections the principal may read, with their state and history."""

    @abc.abstractmethod
    def inspection_step(self, action: str, inspection_id: int, notes: str) -> None:
        """``rectify`` (the operator) or ``close`` (the inspector) an inspection."""

    @abc.abstractmethod
    def data_uses(self) -> dict:
        """A provider's datasets and the agreements, grants, jobs and products using them."""

    @abc.abstractmethod
    def countersign(self, agreement_id: int, dataset: str, terms: str) -> dict:
        """A provider signs an agreement for its own dataset, with its terms."""

    @abc.abstractmethod
    def hold_use(self, action: str, agreement_id: int, dataset: str, reason: str) -> dict:
        """A provider suspends, lifts or terminates the use of its dataset under an agreement."""

    @abc.abstractmethod
    def give_feedback(self, product_id: str, points: dict[str, int], comment: str) -> int:
        """The new feedback's id (points: quality, use, effect)."""

    @abc.abstractmethod
    def deliver_product(self, product_id: str, consumer: str, note: str) -> int:
        """The new delivery's id."""

    @abc.abstractmethod
    def usage_report(self, operator: str, period: str, folder: Path) -> tuple[dict, dict[str, str]]:
        """The report's figures, and its files written into ``folder`` (name -> path)."""

    # --- output review ---------------------------------------------------------------

    @abc.abstractmethod
    def appoint_checkers(
        self, checkers: list[str], *, agreement_id: int | None, job_id: int | None
    ) -> list[int]:
        """The ids of the appointments."""

    @abc.abstractmethod
    def open_review(self, job_id: int) -> dict:
        """The review of a withheld job (opened if needed)."""

    @abc.abstractmethod
    def vote(self, job_id: int, decision: str, reason: str) -> dict:
        """The review after the vote."""

    # --- PSI and HE -----------------------------------------------------------------------

    @abc.abstractmethod
    def psi(
        self,
        dataset: str,
        column: str,
        items: list[str],
        *,
        mode: str,
        consent: str | None,
        group_by: str | None,
        progress: Progress,
    ) -> dict:
        """A PSI match run from here: session, dataset, version, column, mode, list_size,
        count, items, groups, timings, sizes."""

    @abc.abstractmethod
    def set_psi_terms(
        self,
        dataset: str,
        column: str,
        *,
        agreement: int | None,
        grant: int | None,
        **terms: Any,
    ) -> int:
        """The id of the terms."""

    @abc.abstractmethod
    def he_sum(
        self,
        context,
        dataset: str,
        key_column: str,
        by: list[str],
        keys: list[str],
        values: list,
        scheme: str,
    ):
        """Encrypted sums per group, decrypted here with ``context``: a HeResult."""

    # --- verification products -----------------------------------------------------------

    @abc.abstractmethod
    def define_verification(self, definition: dict) -> dict:
        """File a product definition."""

    @abc.abstractmethod
    def approve_verification(self, name: str) -> dict:
        """Publish a product: index_rows, versions ..."""

    @abc.abstractmethod
    def reject_verification(self, name: str, reason: str) -> None:
        """Reject a defined product."""

    @abc.abstractmethod
    def call_verification(self, product: str, items: list[dict], consent: dict | None) -> dict:
        """request_id, product, versions, results (each code, refused, message)."""

    @abc.abstractmethod
    def verification_stats(self, name: str) -> dict:
        """Calls, codes, refusals of a product."""

    @abc.abstractmethod
    def who_verified(self, keys: dict[str, str], product: str | None) -> list[dict]:
        """The calls about one subject."""

    @abc.abstractmethod
    def verification_products(self) -> list[dict]:
        """The verification products the principal may see."""

    # --- models and scoring services (sandbox.models, docs/models.md) -------------------

    @abc.abstractmethod
    def train_model(self, request: dict) -> dict:
        """Train and judge a model: card, signature, card_sha256, timings."""

    @abc.abstractmethod
    def show_model(self, name: str) -> dict:
        """name, operator, status, card, signature."""

    @abc.abstractmethod
    def list_models(self) -> list[dict]:
        """The models the principal may see: name, status, algorithm, auc, created_at."""

    @abc.abstractmethod
    def export_model(self, name: str) -> dict:
        """Ask to export a passed model's file: name, state, agreement."""

    @abc.abstractmethod
    def approve_model_export(self, name: str) -> dict:
        """Approve a model's export: name, state, product."""

    @abc.abstractmethod
    def reject_model_export(self, name: str, reason: str) -> None:
        """Reject a model's export."""

    @abc.abstractmethod
    def model_exports(self) -> list[dict]:
        """The exports the principal may see: name, state, agreement, product, reason."""

    @abc.abstractmethod
    def define_score_service(self, definition: dict) -> dict:
        """name, state, band_sizes of a defined scoring service."""

    @abc.abstractmethod
    def approve_score_service(self, name: str) -> dict:
        """name, state, index_rows of a published scoring service."""

    @abc.abstractmethod
    def reject_score_service(self, name: str, reason: str) -> None:
        """Reject a defined scoring service."""

    @abc.abstractmethod
    def score_services(self) -> list[dict]:
        """The scoring services the principal may see."""

    @abc.abstractmethod
    def who_scored(self, key: str, service: str | None) -> list[dict]:
        """The scoring calls about one subject: ts, consumer, service, grade, consent, ledger_seq."""

    @abc.abstractmethod
    def grade(self, service: str, items: list[dict], consent: dict | None) -> dict:
        """request_id, product, versions, results (each code = grade, refused, message)."""

    # --- privacy budgets (sandbox.guard.dp_budget, /v1/dp) ---------------------------------

    @abc.abstractmethod
    def dp_set_total(self, population: str, year: int, epsilon: float) -> dict:
        """Set a population's epsilon for a year: population, year, epsilon, shared, spent."""

    @abc.abstractmethod
    def dp_budgets(self, year: int | None) -> dict:
        """budgets (each population-year's total, shared, spent, remaining), accounting."""

    @abc.abstractmethod
    def dp_set_share(self, agreement: int, year: int, epsilon: float, population: str) -> dict:
        """Give an agreement its share of a population-year."""

    @abc.abstractmethod
    def dp_shares(self, year: int | None, agreement: int | None) -> dict:
        """shares the principal may see, with what each spent and has left; accounting."""

    @abc.abstractmethod
    def dp_spends(self, year: int | None, agreement: int | None) -> dict:
        """agreements (spent, jobs), total, accounting."""


def psi_dict(result) -> dict:
    """A :class:`sandbox.client.psi.PsiResult` as the command line prints it."""
    return {
        "session": result.session,
        "dataset": result.dataset,
        "version": result.version,
        "column": result.column,
        "mode": result.mode,
        "list_size": result.list_size,
        "count": result.count,
        "items": result.items,
        "groups": result.groups,
        "timings": result.timings,
        "sizes": result.sizes,
    }
