"""The workflow's commands from notice to agreement (Art. 10 to 13, 24), added to
``sandbox`` by :mod:`sandbox.cli.app`; :mod:`sandbox.cli.supervision` has the rest.

One command per action of docs/workflow.md; every one acts as the principal of
``--as TOKEN`` (or ``SANDBOX_TOKEN``) and prints JSON with ``--json``. They parse
options, call :meth:`sandbox.cli.common.Context.backend` (the functions of
:mod:`sandbox.workflow` on the host, or the routes that call them with ``--server``)
and print the same text and JSON either way; a file argument (``@file``) is read here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from policies.errors import InputError
from policies.workflow import Aggregate, Disposal
from sandbox.cli.common import (
    Context,
    as_option,
    as_principal,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)
from sandbox.workflow.periods import EVERY as PERIODS

EVERY = click.Choice(PERIODS)


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"{flag} '{item}': use NAME=VALUE, e.g. min_entities=20")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _datasets(items: tuple[str, ...]) -> dict[str, list[str] | None]:
    """``name`` (every column) or ``name:col1,col2``."""
    out: dict[str, list[str] | None] = {}
    for item in items:
        name, _, cols = item.partition(":")
        out[name.strip()] = [c.strip() for c in cols.split(",") if c.strip()] if cols else None
    return out


def _text(value: str) -> str:
    """A literal, or ``@path`` for the contents of a file."""
    if value and value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise InputError(f"no file '{path}' to read")
        return path.read_text()
    return value


# --- notices (Art. 10) --------------------------------------------------------------------------


@main.group()
def notice() -> None:
    """Notices calling for operators (authorities). Art. 10."""


@notice.command("publish")
@click.option("--title", required=True)
@click.option("--domain", required=True, help="the domain, e.g. 'social insurance'")
@click.option("--scenario", required=True, help="the application scenario sought")
@click.option("--dataset", "datasets", multiple=True, required=True, help="a dataset in scope")
@click.option("--conditions", default="", help="conditions and requirements (text or @file)")
@click.option("--deadline", required=True, help="last moment to apply, ISO date or time")
@click.option("--jurisdiction", default=None, help="'city' or a county code (default: yours)")
@click.option("--pass-score", type=int, default=60, show_default=True)
@click.option("--min-reviewers", type=int, default=2, show_default=True)
@click.option(
    "--aggregate",
    type=click.Choice([a.value for a in Aggregate]),
    default="mean",
    show_default=True,
    help="how reviewers' scores of a dimension combine",
)
@as_principal
def notice_publish(
    obj: Context,
    title,
    domain,
    scenario,
    datasets,
    conditions,
    deadline,
    jurisdiction,
    pass_score,
    min_reviewers,
    aggregate,
    token,
    as_json,
) -> None:
    """Publish a notice with datasets in scope, conditions and a deadline."""
    fields = dict(
        title=title,
        domain=domain,
        scenario=scenario,
        datasets=list(datasets),
        conditions=_text(conditions),
        deadline=deadline,
        jurisdiction=jurisdiction,
    )
    with obj.backend(token) as backend:
        data = backend.publish_notice(fields, pass_score, min_reviewers, aggregate)
    emit(
        data,
        as_json,
        f"notice {data['id']} published ({data['jurisdiction']}); "
        f"applications until {data['deadline']}",
    )


@notice.command("show")
@click.argument("notice_id", type=int)
@as_principal
def notice_show(obj: Context, notice_id: int, token, as_json) -> None:
    """Show a notice (any principal)."""
    with obj.backend(token) as backend:
        data = backend.notice(notice_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


# --- applications (Art. 11) ----------------------------------------------------------------------


@main.command("apply")
@click.option("--notice", "notice_id", type=int, required=True)
@click.option("--scenario", required=True)
@click.option(
    "--dataset", "datasets", multiple=True, required=True, help="NAME or NAME:col1,col2 (repeat)"
)
@click.option(
    "--job-kind", "job_kinds", multiple=True, default=("sql_aggregate",), show_default=True
)
@click.option(
    "--product-kind", "product_kinds", multiple=True, default=("report",), show_default=True
)
@click.option("--security-measures", required=True, help="text or @file")
@click.option("--security-officer", default="", help="the named data-security officer (Art. 20)")
@click.option("--incident-plan", default="", help="incident-response plan, text or @file (Art. 21)")
@as_principal
def apply_cmd(
    obj: Context,
    notice_id,
    scenario,
    datasets,
    job_kinds,
    product_kinds,
    security_measures,
    security_officer,
    incident_plan,
    token,
    as_json,
) -> None:
    """Apply to a notice before its deadline (operators)."""
    fields = dict(
        scenario=scenario,
        datasets=_datasets(datasets),
        job_kinds=list(job_kinds),
        product_kinds=list(product_kinds),
        security_measures=_text(security_measures),
        security_officer=security_officer,
        incident_plan=_text(incident_plan),
    )
    with obj.backend(token) as backend:
        aid = backend.apply(notice_id, **fields)
    emit(
        {"application": aid, "status": "submitted"},
        as_json,
        f"application {aid} submitted to notice {notice_id}",
    )


@main.group()
def application() -> None:
    """Applications to notices. Art. 11."""


@application.command("show")
@click.argument("application_id", type=int)
@as_principal
def application_show(obj: Context, application_id, token, as_json) -> None:
    """An application (its operator, the notice's authority, its reviewers, auditors)."""
    with obj.backend(token) as backend:
        data = backend.application(application_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


# --- reviews (Art. 12) ----------------------------------------------------------------------------


@main.group()
def review() -> None:
    """Qualification review of applications. Art. 12."""


@review.command("appoint")
@click.argument("application_id", type=int)
@click.option("--reviewer", "reviewers", multiple=True, required=True)
@as_principal
def review_appoint(obj: Context, application_id, reviewers, token, as_json) -> None:
    """Appoint reviewers to an application (authorities)."""
    with obj.backend(token) as backend:
        ids = backend.appoint_reviewers(application_id, list(reviewers))
    emit(
        {"application": application_id, "reviews": ids},
        as_json,
        f"{len(ids)} reviewer(s) appointed to application {application_id}",
    )


@review.command("score")
@click.argument("application_id", type=int)
@click.option("--capability", type=int, required=True)
@click.option("--scenario", type=int, required=True)
@click.option("--security", type=int, required=True)
@click.option("--comment", default="")
@as_principal
def review_score(
    obj: Context, application_id, capability, scenario, security, comment, token, as_json
) -> None:
    """Score an application 0-100 on capability, scenario and security (reviewers)."""
    scores = dict(capability=capability, scenario=scenario, security=security, comment=comment)
    with obj.backend(token) as backend:
        state = backend.score(application_id, **scores)
    emit(
        {"application": application_id, "status": state},
        as_json,
        f"scored; application {application_id} is {state}",
    )


@review.command("show")
@click.argument("application_id", type=int)
@as_principal
def review_show(obj: Context, application_id, token, as_json) -> None:
    """The scores of an application (authorities, auditors)."""
    with obj.backend(token) as backend:
        rows = backend.reviews(application_id)
    emit(
        rows,
        as_json,
        table(
            [(r["reviewer"], r["status"], r["scores"]) for r in rows],
            ("reviewer", "status", "scores"),
            empty="(no reviewers)",
        ),
    )


# --- agreements (Art. 13, 24) ------------------------------------------------------------------


@main.group()
def agreement() -> None:
    """Operation agreements and their suspension, restoration, termination, expiry."""


@agreement.command("sign")
@click.argument("application_id", type=int)
@click.option("--from", "start", required=True, help="start of the term, ISO date")
@click.option("--until", required=True, help="end of the term, ISO date")
@click.option("--rights-duties", required=True, help="text or @file")
@click.option("--security-requirements", required=True, help="text or @file")
@click.option("--exit-conditions", required=True, help="text or @file")
@click.option("--breach-liability", required=True, help="text or @file")
@click.option(
    "--disposal",
    type=click.Choice([d.value for d in Disposal]),
    required=True,
    help="what happens to derived products at expiry",
)
@click.option("--review-required", is_flag=True, help="every output waits for two checkers")
@click.option("--disclosure", multiple=True, help="stricter disclosure parameter, NAME=VALUE")
@click.option("--aggregates", default="", help="extra aggregates, e.g. median,quantile")
@click.option("--checker", "checkers", multiple=True, help="output checker (repeat; two)")
@click.option(
    "--report-every",
    type=click.Choice(["month", "quarter"]),
    default=None,
    help="usage reports due at the end of each month or quarter (Art. 16)",
)
@click.option(
    "--training-every",
    type=EVERY,
    default=None,
    help="staff security training due each month, quarter or year (Art. 20)",
)
@click.option(
    "--drill-every",
    type=EVERY,
    default=None,
    help="an emergency drill due each month, quarter or year (Art. 21)",
)
@click.option(
    "--evaluate-every",
    type=EVERY,
    default=None,
    help="the authority's evaluation due each month, quarter or year (Art. 23)",
)
@as_principal
def agreement_sign(
    obj: Context,
    application_id,
    start,
    until,
    rights_duties,
    security_requirements,
    exit_conditions,
    breach_liability,
    disposal,
    review_required,
    disclosure,
    aggregates,
    checkers,
    report_every,
    training_every,
    drill_every,
    evaluate_every,
    token,
    as_json,
) -> None:
    """Sign the agreement of a passed application (authorities)."""
    terms = dict(
        valid_from=start,
        valid_until=until,
        rights_duties=_text(rights_duties),
        security_requirements=_text(security_requirements),
        exit_conditions=_text(exit_conditions),
        breach_liability=_text(breach_liability),
        review_required=review_required,
        disclosure=_pairs(disclosure, "--disclosure"),
        aggregates=[a.strip() for a in aggregates.split(",") if a.strip()],
    )
    everies = {"report_every": report_every, "training_every": training_every,
               "drill_every": drill_every, "evaluate_every": evaluate_every}  # fmt: skip
    terms.update({k: v for k, v in everies.items() if v})
    with obj.backend(token) as backend:
        aid = backend.sign_agreement(application_id, **terms, disposal=disposal)
        if checkers:
            backend.appoint_checkers(list(checkers), agreement_id=aid, job_id=None)
    emit(
        {"agreement": aid, "status": "active"},
        as_json,
        f"agreement {aid} signed; active from {start} until {until}",
    )


@agreement.command("show")
@click.argument("agreement_id", type=int)
@as_principal
def agreement_show(obj: Context, agreement_id, token, as_json) -> None:
    """Every field of an agreement (its parties, authorities, auditors)."""
    with obj.backend(token) as backend:
        data = backend.agreement(agreement_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


def schedules_text(agreement_id: int, schedules: dict) -> str:
    """One line per schedule: how often, what fell due, what is missing."""
    lines = [
        f"{duty} every {s['every']}: due {', '.join(s['due']) or 'none yet'}; missing "
        f"{', '.join(s['missing']) or 'none'}"
        for duty, s in schedules.items()
    ]
    return "\n".join(lines) or f"agreement {agreement_id} has no schedule"


@agreement.command("schedule")
@click.argument("agreement_id", type=int)
@click.option("--training-every", type=EVERY, default=None, help="(Art. 20)")
@click.option("--drill-every", type=EVERY, default=None, help="(Art. 21)")
@click.option("--evaluate-every", type=EVERY, default=None, help="(Art. 23)")
@as_principal
def agreement_schedule(obj: Context, agreement_id, training_every, drill_every, evaluate_every,
                       token, as_json) -> None:  # fmt: skip
    """Set or change how often trainings, drills and evaluations fall due under an
    agreement; the changed ones count from now (authorities covering it)."""
    everies = {"training": training_every, "drill": drill_every, "evaluation": evaluate_every}
    with obj.backend(token) as backend:
        data = backend.set_schedules(agreement_id, everies)
    emit(data, as_json, schedules_text(agreement_id, data))


def _agreement_action(name: str, help_text: str):
    @agreement.command(name, help=help_text, short_help=help_text.split(" (")[0])
    @click.argument("agreement_id", type=int)
    @click.option("--reason", required=True)
    @as_option
    @json_option
    @pass_ctx
    def command(obj: Context, agreement_id, reason, token, as_json) -> None:
        with obj.backend(token) as backend:
            getattr(backend, f"{name}_agreement")(agreement_id, reason)
            status = backend.agreement(agreement_id)["status"]
        emit(
            {"agreement": agreement_id, "status": status},
            as_json,
            f"agreement {agreement_id} is {status}",
        )

    return command


_agreement_action("suspend", "Suspend data use under an agreement (authorities; Art. 24).")
_agreement_action("restore", "Restore a suspended agreement (authorities; Art. 24).")
_agreement_action(
    "terminate",
    "Terminate a suspended agreement after its rectification deadline (authorities; Art. 24).",
)


@agreement.command("expire")
@click.argument("agreement_id", type=int, required=False)
@as_principal
def agreement_expire(obj: Context, agreement_id, token, as_json) -> None:
    """Expire agreements whose term ended and carry out their disposal clause. Art. 13."""
    with obj.backend(token) as backend:
        ids = backend.expire_agreements(agreement_id)
    emit({"expired": ids}, as_json, f"expired: {', '.join(map(str, ids)) or 'none'}")
