"""The backend behind ``--server``: each call goes through :class:`sandbox.client.Client`
to the route that calls the same domain function, and comes back as the same plain data
:class:`sandbox.cli.local.LocalBackend` returns. Files cross here: a local data file is
uploaded, a product's zip and a usage report's files are written on this machine.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from sandbox.cli.backend import Backend, psi_dict
from sandbox.client import Client
from sandbox.client.envelope import invalid_request
from sandbox.client.results import Result


def _plain(value: Any) -> Any:
    """A typed result as the JSON the command prints: a workflow result as the route sent
    it, an API model as its fields, a list of them as a list; plain data as it is."""
    if isinstance(value, Result):
        return value.to_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _keywords(method: Any, given: dict[str, Any]) -> dict[str, Any]:
    """A definition file's fields as the keyword parameters of a client method, refused
    as the API refuses a body with a field it does not know or without one it needs."""
    parameters = inspect.signature(method).parameters
    unknown = [f"{k}: Extra inputs are not permitted" for k in given if k not in parameters]
    missing = [f"{name}: Field required" for name, p in parameters.items()
               if p.kind is p.KEYWORD_ONLY and p.default is p.empty and name not in given]  # fmt: skip
    if unknown or missing:
        raise invalid_request(missing + unknown)
    return given


def job_dict(job) -> dict:
    """A client's Job as the command line prints a job's outcome."""
    return {
        "job": job.job,
        "state": job.state,
        "reason": job.reason,
        "report": job.report,
        "product": job.product,
    }


def _local_workbook(source: str) -> tuple[str, dict[str, str]] | None:
    """(path, options) of a workbook on this machine named with ``?sheet=...`` options."""
    from urllib.parse import parse_qsl

    from connectors.excel import is_workbook

    for prefix in ("excel://", "xlsx://", ""):
        if source.startswith(prefix) and is_workbook(source[len(prefix) :]):
            path, _, query = source[len(prefix) :].partition("?")
            if Path(path).is_file():
                return path, dict(parse_qsl(query))
    return None


class RemoteBackend(Backend):
    def __init__(self, client: Client):
        self.client = client

    # --- datasets and grants ------------------------------------------------------------

    def register_dataset(self, name, source, classification_path, classification, progress):
        if Path(source).is_file():  # a local file is uploaded; anything else the server reads
            reg = self.client.register_upload(name, source, classification_path)
        elif (workbook := _local_workbook(source)) is not None:
            path, options = workbook
            reg = self.client.register_upload(
                name,
                path,
                classification_path,
                sheet=options.get("sheet"),
                header=options.get("header"),
                text_columns=options["text"].split(",") if options.get("text") else None,
            )
        else:
            reg = self.client.register_uri(name, source, classification.to_dict())
        return _plain(reg)

    def suggest_classification(self, source, rows):
        if Path(source).is_file():  # a file on this machine is sent along, not kept
            return _plain(self.client.suggest_upload(source, rows=rows))
        if (workbook := _local_workbook(source)) is not None:
            path, options = workbook
            sheet, header = options.get("sheet"), options.get("header")
            return _plain(self.client.suggest_upload(path, rows=rows, sheet=sheet, header=header))
        return _plain(self.client.suggest(source, rows=rows))

    def refresh_dataset(self, name):
        return _plain(self.client.refresh(name))

    def schedule_refresh(self, name, daily_at):
        return _plain(self.client.schedule_refresh(name, daily_at))

    def list_sources(self):
        return _plain(self.client.list_sources())

    def list_datasets(self):
        return [_plain(d) for d in self.client.list_datasets()]

    def show_dataset(self, name, version):
        # the route shows the profile only to the roles the host shows it to
        d = self.client.show_dataset(name, version)
        return {
            "dataset": name,
            "version": d.version,
            "sha256": d.sha256,
            "rows": d.rows,
            "classification": d.classification,
            "profile": d.profile,
        }

    def list_grants(self):
        return _plain(self.client.list_grants())

    # --- jobs, products, ledger ------------------------------------------------------------

    def submit_job(self, sql):
        job = self.client.submit_job(sql)
        return job_dict(self.client.wait_job(job.job))

    def job(self, job_id):
        return job_dict(self.client.job(job_id))

    def list_jobs(self):
        return [_plain(j) for j in self.client.list_jobs()]

    def list_products(self):
        return [_plain(p) for p in self.client.list_products()]

    def get_product(self, product_id, out):
        """Download the product's zip and unpack it into ``out/<id>``."""
        import tempfile
        import zipfile

        from policies.errors import Conflict

        target = Path(out) / product_id
        if target.exists():
            raise Conflict(f"{target} exists already; choose another --out")
        with tempfile.TemporaryDirectory() as tmp:
            archive = self.client.download_zip(product_id, tmp)
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                if any(Path(n).is_absolute() or ".." in Path(n).parts for n in names):
                    raise Conflict(f"{product_id}: the archive names a path outside its folder")
                target.mkdir(parents=True)
                for name in names:
                    (target / Path(name).name).write_bytes(zf.read(name))
        return target

    def verify_ledger(self):
        return _plain(self.client.verify_ledger())

    def ledger(self, **filters):
        return [_plain(e) for e in self.client.ledger(**filters)]

    # --- principals' lifecycle ---------------------------------------------------------

    def deactivate_principal(self, name, reason):
        return _plain(self.client.deactivate_principal(name, reason))

    def reactivate_principal(self, name, reason):
        return _plain(self.client.reactivate_principal(name, reason))

    def rotate_token(self, name):
        return _plain(self.client.rotate_token(name))

    # --- notices, applications, reviews ---------------------------------------------------

    def publish_notice(self, fields, pass_score, min_reviewers, aggregate):
        nid = self.client.publish_notice(
            **fields, min_score=pass_score, min_reviewers=min_reviewers, aggregate=aggregate
        )
        return _plain(self.client.notice(nid))

    def notice(self, notice_id):
        return _plain(self.client.notice(notice_id))

    def apply(self, notice_id, **fields):
        return self.client.apply(notice_id, **fields)

    def application(self, application_id):
        return _plain(self.client.application(application_id))

    def appoint_reviewers(self, application_id, reviewers):
        return self.client.appoint_reviewers(application_id, list(reviewers))

    def score(self, application_id, *, capability, scenario, security, comment):
        return self.client.score(
            application_id,
            capability=capability,
            scenario=scenario,
            security=security,
            comment=comment,
        )

    def reviews(self, application_id):
        return _plain(self.client.reviews(application_id))

    # --- agreements --------------------------------------------------------------------

    def sign_agreement(self, application_id, *, disposal, **terms):
        return self.client.sign_agreement(application_id, **terms, disposal=disposal)

    def agreement(self, agreement_id):
        return _plain(self.client.agreement(agreement_id))

    def set_schedules(self, agreement_id, everies):
        return self.client.set_schedules(agreement_id, **everies)

    def suspend_agreement(self, agreement_id, reason):
        self.client.suspend_agreement(agreement_id, reason)

    def restore_agreement(self, agreement_id, reason):
        self.client.restore_agreement(agreement_id, reason)

    def terminate_agreement(self, agreement_id, reason):
        self.client.terminate_agreement(agreement_id, reason)

    def expire_agreements(self, agreement_id):
        return self.client.expire_agreements(agreement_id)

    # --- requests and quality ------------------------------------------------------------

    def request_data(self, agreement_id, dataset, *, purpose, columns):
        return self.client.request_data(agreement_id, dataset, purpose=purpose, columns=columns)

    def approve_request(self, request_id):
        return self.client.approve_request(request_id)

    def refuse_request(self, request_id, reason):
        self.client.refuse_request(request_id, reason)

    def report_quality(self, dataset, text):
        return self.client.report_quality(dataset, text)

    def answer_quality(self, ticket_id, text, version):
        self.client.answer_quality(ticket_id, text, version)

    # --- supervision, feedback, usage ------------------------------------------------------

    def evaluate(self, agreement_id, *, passed, notes, deadline, materials, score):
        verdict = dict(passed=passed, notes=notes, deadline=deadline, score=score)
        return self.client.evaluate(agreement_id, **verdict, materials=materials)

    def evaluation(self, evaluation_id):
        return self.client.evaluation(evaluation_id)

    def submit_material(self, agreement_id, path, title):
        from sandbox.workflow.evaluations import local_file

        source = local_file(path)  # refused here as on the host, before a byte is sent
        return self.client.submit_material(agreement_id, source, title)

    def materials(self, agreement_id):
        return self.client.materials(agreement_id)

    def download_material(self, material_id, out):
        from sandbox.cli.local_workflow import saved_material

        info, data = self.client.material_content(material_id)
        return saved_material(_plain(info), data, out)

    def rectify(self, agreement_id, notes):
        self.client.rectify(agreement_id, notes)

    def report_incident(self, operator, kind, description, product):
        return self.client.report_incident(operator, kind, description, product=product)

    def file_plan(self, plan):
        return self.client.file_plan(plan)

    def inspect(self, operator, findings, tasks, deadline):
        return self.client.inspect(operator, list(findings), list(tasks), deadline)

    def inbox(self, limit, before, kind):
        return _plain(self.client.inbox(limit=limit, before=before, kind=kind))

    def list_workflow(self, kind, **filters):
        return _plain(self.client.list_workflow(kind, **filters))

    def catalogue(self, limit, before):
        return _plain(self.client.catalogue(limit=limit, before=before))

    def record_duty(self, kind, fields):
        return self.client.record_duty(kind, **fields)

    def duties(self, operator):
        return self.client.duties(operator)

    def inspections(self):
        return self.client.inspections()

    def inspection_step(self, action, inspection_id, notes):
        self.client.inspection_step(action, inspection_id, notes)

    def data_uses(self):
        return self.client.data_uses()

    def countersign(self, agreement_id, dataset, terms):
        return self.client.countersign(agreement_id, dataset, terms)

    def hold_use(self, action, agreement_id, dataset, reason):
        return self.client.hold_use(action, agreement_id, dataset, reason)

    def give_feedback(self, product_id, points, comment):
        return self.client.give_feedback(product_id, **points, comment=comment)

    def deliver_product(self, product_id, consumer, note):
        return self.client.deliver_product(product_id, consumer, note)

    def usage_report(self, operator, period, folder):
        got = self.client.usage_report(operator, period)
        return got.report, got.write(folder)

    # --- output review -------------------------------------------------------------------

    def appoint_checkers(self, checkers, *, agreement_id, job_id):
        return self.client.appoint_checkers(
            list(checkers), agreement_id=agreement_id, job_id=job_id
        )

    def open_review(self, job_id):
        return _plain(self.client.open_review(job_id))

    def vote(self, job_id, decision, reason):
        return _plain(self.client.vote(job_id, decision, reason))

    # --- PSI and HE -----------------------------------------------------------------------

    def psi(self, dataset, column, items, *, mode, consent, group_by, progress):
        options = dict(mode=mode, consent=consent, group_by=group_by, progress=progress)
        return psi_dict(self.client.psi(dataset, column, items, **options))

    def set_psi_terms(self, dataset, column, *, agreement, grant, **terms):
        return self.client.set_psi_terms(dataset, column, agreement=agreement, grant=grant, **terms)

    def he_sum(self, context, dataset, key_column, by, keys, values, scheme):
        return self.client.he_sum(dataset, key_column, by, keys, values, scheme, context=context)

    # --- verification products -----------------------------------------------------------

    def define_verification(self, definition):
        define = self.client.define_verification
        return define(**_keywords(define, definition))

    def approve_verification(self, name):
        return self.client.approve_verification(name)

    def reject_verification(self, name, reason):
        self.client.reject_verification(name, reason)

    def call_verification(self, product, items, consent):
        # the batch route answers every subject, refused ones included, as the host does
        answer = self.client.verify_batch(product, items, consent)
        return {
            "request_id": answer.request_id,
            "product": answer.product,
            "versions": answer.versions,
            "results": answer.results,
        }

    def verification_stats(self, name):
        return self.client.verification_stats(name)

    def who_verified(self, keys, product):
        return self.client.who_verified(keys, product)

    def verification_products(self):
        return self.client.verification_products()

    # --- models and scoring services -------------------------------------------------------

    def train_model(self, request):
        return self.client.train_model(**_keywords(self.client.train_model, request))

    def show_model(self, name):
        return self.client.model(name)

    def list_models(self):
        return self.client.models()

    def export_model(self, name):
        return _plain(self.client.export_model(name))

    def approve_model_export(self, name):
        return _plain(self.client.approve_model_export(name))

    def reject_model_export(self, name, reason):
        self.client.reject_model_export(name, reason)

    def model_exports(self):
        return [_plain(e) for e in self.client.model_exports()]

    def define_score_service(self, definition):
        define = self.client.define_score_service
        return define(**_keywords(define, definition))

    def approve_score_service(self, name):
        return self.client.approve_score_service(name)

    def reject_score_service(self, name, reason):
        self.client.reject_score_service(name, reason)

    def score_services(self):
        return self.client.score_services()

    def who_scored(self, key, service):
        return self.client.who_scored(key, service)

    def grade(self, service, items, consent):
        return self.client.grade(service, items, consent)

    def _dp(self, method: str, path: str, query: dict | None = None, body: dict | None = None):
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return self.client._json(method, path, params=params, json=body)

    def dp_set_total(self, population, year, epsilon):
        body = {"population": population, "year": year, "epsilon": epsilon}
        return self._dp("POST", "/v1/dp/budgets", body=body)

    def dp_budgets(self, year):
        return self._dp("GET", "/v1/dp/budgets", {"year": year})

    def dp_set_share(self, agreement, year, epsilon, population):
        body = {"agreement": agreement, "year": year, "epsilon": epsilon, "population": population}
        return self._dp("POST", "/v1/dp/shares", body=body)

    def dp_shares(self, year, agreement):
        return self._dp("GET", "/v1/dp/shares", {"year": year, "agreement": agreement})

    def dp_spends(self, year, agreement):
        return self._dp("GET", "/v1/dp/spends", {"year": year, "agreement": agreement})
