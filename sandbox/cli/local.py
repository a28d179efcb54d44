"""The backend on the platform's host: each call is the domain function, in-process.

The principal is authenticated from the token on the first call that needs one (so a
call that needs none, such as :meth:`LocalBackend.verify_ledger`, runs without a token,
as the host-level ``ledger verify`` always has).
"""

from __future__ import annotations

from pathlib import Path

from sandbox.cli.backend import Backend, psi_dict
from sandbox.cli.local_models import LocalModelCalls
from sandbox.cli.local_workflow import LocalWorkflowCalls
from sandbox.core.platform import Platform


def outcome_dict(outcome) -> dict:
    """A job's outcome as the command line prints it."""
    return {
        "job": outcome.job_id,
        "state": outcome.state.value,
        "reason": outcome.reason,
        "report": outcome.report,
        "product": outcome.product_id,
    }


class LocalBackend(LocalModelCalls, LocalWorkflowCalls, Backend):
    def __init__(self, platform: Platform, token: str | None):
        self.platform = platform
        self._token = token
        self._me = None

    @property
    def me(self):
        """The principal of the token, authenticated once."""
        if self._me is None:
            from sandbox.core.principals import authenticate

            with self.platform.store.read() as conn:
                self._me = authenticate(conn, self._token)
        return self._me

    # --- datasets and grants ------------------------------------------------------------

    def register_dataset(self, name, source, classification_path, classification, progress):
        from sandbox.data.vault import register

        return register(self.platform, self.me, name, source, classification, progress).summary()

    def suggest_classification(self, source, rows):
        from sandbox.data.suggestion import suggest_classification

        return suggest_classification(self.platform, self.me, source, rows=rows)

    def refresh_dataset(self, name):
        from sandbox.data.refresh import refresh

        return refresh(self.platform, self.me, name)

    def schedule_refresh(self, name, daily_at):
        from sandbox.data.refresh import set_schedule

        return set_schedule(self.platform, self.me, name, daily_at)

    def list_sources(self):
        from sandbox.data.refresh import list_sources

        return list_sources(self.platform, self.me)

    def list_datasets(self):
        from sandbox.data.vault import list_datasets

        self.me  # noqa: B018  (any principal may list them, but only a principal)
        with self.platform.store.read() as conn:
            return list_datasets(conn)

    def show_dataset(self, name, version):
        from policies.errors import PermissionDenied
        from sandbox.core.principals import Role, require_role
        from sandbox.data.vault import get_version

        me = self.me
        require_role(
            me,
            Role.PROVIDER,
            Role.AUTHORITY,
            Role.AUDITOR,
            action="read quality profiles (they stay inside the platform)",
            article="Art. 14",
        )
        with self.platform.store.read() as conn:
            v = get_version(conn, self.platform, name, version)
        if me.role.value == "provider" and v.provider_id != me.id:
            raise PermissionDenied(
                f"dataset '{name}' belongs to another provider (Art. 14)", article="Art. 14"
            )
        return {
            "dataset": name,
            "version": v.version,
            "sha256": v.sha256,
            "rows": v.rows,
            "classification": v.classification.to_dict(),
            "profile": v.profile,
        }

    def list_grants(self):
        from sandbox.data.grants import list_grants

        me = self.me
        with self.platform.store.read() as conn:
            return list_grants(conn, me)

    # --- jobs, products, ledger ------------------------------------------------------------

    def submit_job(self, sql):
        from sandbox.run.execution import JobService

        me = self.me
        service = JobService(self.platform, spare=False)
        try:
            return outcome_dict(service.submit(me, {"sql": sql}))
        finally:
            service.close()

    def job(self, job_id):
        from sandbox.run.jobstate import job_outcome

        me = self.me
        with self.platform.store.read() as conn:
            return outcome_dict(job_outcome(conn, me, job_id))

    def list_jobs(self):
        from sandbox.run.jobstate import list_jobs

        me = self.me
        with self.platform.store.read() as conn:
            return list_jobs(conn, me)

    def list_products(self):
        from sandbox.data.products import list_products

        me = self.me
        with self.platform.store.read() as conn:
            return list_products(conn, me)

    def get_product(self, product_id, out):
        from sandbox.data.products import fetch_product

        return Path(fetch_product(self.platform, self.me, product_id, out))

    def verify_ledger(self):
        from sandbox.core import ledger
        from sandbox.core.keys import load_public

        with self.platform.store.read() as conn:
            report = ledger.verify(conn, load_public(self.platform.public_key_path))
        return {
            "entries": report.entries,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        }

    def ledger(self, **filters):
        from sandbox.registry.jurisdiction import read_ledger

        me = self.me
        with self.platform.store.read() as conn:
            return read_ledger(conn, me, **filters)

    # --- principals' lifecycle ---------------------------------------------------------

    @property
    def _manager(self):
        """Who acts on a principal here: with a token, that principal (an authority, its
        jurisdiction); without one, the platform's host, as for ``principal add``."""
        return self.me if self._token else None

    def deactivate_principal(self, name, reason):
        from sandbox.core.principals import Status, set_status

        return set_status(self.platform, self._manager, name, Status.DEACTIVATED, reason)

    def reactivate_principal(self, name, reason):
        from sandbox.core.principals import Status, set_status

        return set_status(self.platform, self._manager, name, Status.ACTIVE, reason)

    def rotate_token(self, name):
        from sandbox.core.principals import rotate_token

        return rotate_token(self.platform, self._manager, name)

    # --- notices, applications, reviews ---------------------------------------------------

    def publish_notice(self, fields, pass_score, min_reviewers, aggregate):
        from policies.workflow import Aggregate, PassRule
        from sandbox.workflow.notices import notice_dict, publish

        rule = PassRule(pass_score, min_reviewers, Aggregate(aggregate))
        nid = publish(self.platform, self.me, **fields, pass_rule=rule)
        with self.platform.store.read() as conn:
            return notice_dict(conn, nid)

    def notice(self, notice_id):
        from sandbox.workflow.notices import notice_dict

        self.me  # noqa: B018  (any principal may read a notice, but only a principal)
        with self.platform.store.read() as conn:
            return notice_dict(conn, notice_id)

    def apply(self, notice_id, **fields):
        from sandbox.workflow.applications import apply

        return apply(self.platform, self.me, notice_id, **fields)

    def application(self, application_id):
        from sandbox.workflow.reading import application_for

        me = self.me
        with self.platform.store.read() as conn:
            return application_for(conn, me, application_id)

    def appoint_reviewers(self, application_id, reviewers):
        from sandbox.workflow.reviews import appoint

        return appoint(self.platform, self.me, application_id, reviewers)

    def score(self, application_id, *, capability, scenario, security, comment):
        from sandbox.workflow.reviews import score

        scores = dict(capability=capability, scenario=scenario, security=security, comment=comment)
        return score(self.platform, self.me, application_id, **scores).value

    def reviews(self, application_id):
        from sandbox.workflow.reviews import reviews_of

        return reviews_of(self.platform, self.me, application_id)

    # --- agreements --------------------------------------------------------------------

    def sign_agreement(self, application_id, *, disposal, **terms):
        from policies.workflow import Disposal
        from sandbox.workflow.agreements import sign

        return sign(self.platform, self.me, application_id, **terms, disposal=Disposal(disposal))

    def agreement(self, agreement_id):
        from sandbox.workflow.agreements import agreement_dict

        me = self.me
        with self.platform.store.read() as conn:
            return agreement_dict(conn, me, agreement_id)

    def set_schedules(self, agreement_id, everies):
        from sandbox.workflow.schedules import change

        return change(self.platform, self.me, agreement_id, everies)

    def suspend_agreement(self, agreement_id, reason):
        from sandbox.workflow.agreements import suspend

        suspend(self.platform, self.me, agreement_id, reason)

    def restore_agreement(self, agreement_id, reason):
        from sandbox.workflow.agreements import restore

        restore(self.platform, self.me, agreement_id, reason)

    def terminate_agreement(self, agreement_id, reason):
        from sandbox.workflow.agreements import terminate

        terminate(self.platform, self.me, agreement_id, reason)

    def expire_agreements(self, agreement_id):
        from sandbox.workflow.agreements import expire

        return expire(self.platform, self.me, agreement_id)

    # --- requests and quality ------------------------------------------------------------

    def request_data(self, agreement_id, dataset, *, purpose, columns):
        from sandbox.workflow.requests import request_data

        return request_data(
            self.platform, self.me, agreement_id, dataset, purpose=purpose, columns=columns
        )

    def approve_request(self, request_id):
        from sandbox.workflow.requests import approve

        return approve(self.platform, self.me, request_id)

    def refuse_request(self, request_id, reason):
        from sandbox.workflow.requests import refuse_request

        refuse_request(self.platform, self.me, request_id, reason)

    def report_quality(self, dataset, text):
        from sandbox.workflow.requests import report_quality

        return report_quality(self.platform, self.me, dataset, text)

    def answer_quality(self, ticket_id, text, version):
        from sandbox.workflow.requests import answer_quality

        answer_quality(self.platform, self.me, ticket_id, text, version)

    # --- supervision, feedback, usage ------------------------------------------------------

    def evaluate(self, agreement_id, *, passed, notes, deadline, materials, score):
        from sandbox.workflow.supervision import evaluate

        verdict = dict(passed=passed, notes=notes, deadline=deadline, score=score)
        return evaluate(self.platform, self.me, agreement_id, **verdict, materials=materials)

    def rectify(self, agreement_id, notes):
        from sandbox.workflow.supervision import rectify

        rectify(self.platform, self.me, agreement_id, notes)

    def report_incident(self, operator, kind, description, product):
        from sandbox.workflow.consumers import incident_report

        return incident_report(
            self.platform, self.me, kind, description, operator=operator, product=product
        )

    def file_plan(self, plan):
        from sandbox.workflow.consumers import file_plan

        return file_plan(self.platform, self.me, plan)

    def inspect(self, operator, findings, tasks, deadline):
        from sandbox.workflow.supervision import inspect

        return inspect(self.platform, self.me, operator, findings, tasks, deadline)

    def usage_report(self, operator, period, folder):
        from sandbox.workflow.usage import usage_report, write_report

        me = self.me
        data = usage_report(self.platform, me, operator, period)
        return data, write_report(self.platform, me, data, folder)

    # --- output review -------------------------------------------------------------------

    def appoint_checkers(self, checkers, *, agreement_id, job_id):
        from sandbox.workflow.airlock import appoint_checkers

        return appoint_checkers(
            self.platform, self.me, checkers, agreement_id=agreement_id, job_id=job_id
        )

    def open_review(self, job_id):
        from sandbox.workflow.airlock import open_review

        return open_review(self.platform, self.me, job_id)

    def vote(self, job_id, decision, reason):
        from policies.workflow import Vote
        from sandbox.workflow.airlock import vote

        return vote(self.platform, self.me, job_id, Vote(decision), reason)

    # --- PSI and HE -----------------------------------------------------------------------

    def psi(self, dataset, column, items, *, mode, consent, group_by, progress):
        from sandbox.client.psi import run_psi
        from sandbox.psi.service import LocalTransport

        transport = LocalTransport(self.platform, self.me)
        options = dict(mode=mode, consent=consent, group_by=group_by, progress=progress)
        return psi_dict(run_psi(transport, dataset, column, items, **options))

    def set_psi_terms(self, dataset, column, *, agreement, grant, **terms):
        from sandbox.psi.terms import set_terms

        return set_terms(
            self.platform,
            self.me,
            dataset=dataset,
            column=column,
            agreement_id=agreement,
            grant_id=grant,
            **terms,
        )

    def he_sum(self, context, dataset, key_column, by, keys, values, scheme):
        from sandbox.client import he as client_he
        from sandbox.he.service import he_sum_safely

        operator = self.me
        body = client_he.build_request(context, dataset, key_column, by, keys, values, scheme)
        answer = he_sum_safely(self.platform, operator, body)
        return client_he.decrypt_answer(context, answer.to_bytes())

    # --- verification products -----------------------------------------------------------

    def define_verification(self, definition):
        from sandbox.verification.products import define

        return define(self.platform, self.me, definition)

    def approve_verification(self, name):
        from sandbox.verification.products import approve

        return approve(self.platform, self.me, name)

    def reject_verification(self, name, reason):
        from sandbox.verification.products import reject

        reject(self.platform, self.me, name, reason)

    def call_verification(self, product, items, consent):
        from sandbox.verification.service import call

        return call(self.platform, self.me, product, items, consent).to_dict()

    def verification_stats(self, name):
        from sandbox.verification.audit import stats

        return stats(self.platform, self.me, name)

    def who_verified(self, keys, product):
        from sandbox.verification.audit import who

        return who(self.platform, self.me, keys, product)

    def verification_products(self):
        from sandbox.verification.products import list_products

        return list_products(self.platform, self.me)

    def dp_set_total(self, population, year, epsilon):
        from sandbox.guard import dp_admin

        return dp_admin.set_total(self.platform, self.me, population, year, epsilon)

    def dp_budgets(self, year):
        from sandbox.guard import dp_views

        with self.platform.store.read() as conn:
            return dp_views.budgets(conn, self.me, year)

    def dp_set_share(self, agreement, year, epsilon, population):
        from sandbox.guard import dp_admin

        return dp_admin.set_share(self.platform, self.me, agreement, year, epsilon, population)

    def dp_shares(self, year, agreement):
        from sandbox.guard import dp_views

        with self.platform.store.read() as conn:
            return dp_views.shares(conn, self.me, year, agreement)

    def dp_spends(self, year, agreement):
        from sandbox.guard import dp_views

        with self.platform.store.read() as conn:
            return dp_views.spends(conn, self.me, year, agreement)
