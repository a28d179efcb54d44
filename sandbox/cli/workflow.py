"""The workflow's commands (Art. 9 to 24), added to ``sandbox`` by :mod:`sandbox.cli.app`.

One command per action of docs/workflow.md; every one acts as the principal of
``--as TOKEN`` (or ``SANDBOX_TOKEN``) and prints JSON with ``--json``. The
functions they call live in :mod:`sandbox.workflow`; this module only parses
options and prints. With ``--server URL`` (or ``SANDBOX_SERVER``) each command
goes through :class:`sandbox.client.Client` to the route that calls the same
function, and prints the same text and JSON: a file argument (``@file``) is
read here, and the files of a usage report are written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from policies.errors import InputError
from policies.workflow import Aggregate, Disposal, PassRule, Vote
from sandbox.cli.common import (
    Context,
    as_option,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)


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
@as_option
@json_option
@pass_ctx
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
    if obj.server:
        with obj.client(token) as api:
            nid = api.publish_notice(
                **fields, min_score=pass_score, min_reviewers=min_reviewers, aggregate=aggregate
            )
            data = api.notice(nid)
    else:
        from sandbox.workflow.notices import notice_dict, publish

        me = obj.principal(token)
        rule = PassRule(pass_score, min_reviewers, Aggregate(aggregate))
        nid = publish(obj.platform, me, **fields, pass_rule=rule)
        with obj.platform.store.read() as conn:
            data = notice_dict(conn, nid)
    emit(
        data,
        as_json,
        f"notice {nid} published ({data['jurisdiction']}); applications until {data['deadline']}",
    )


@notice.command("show")
@click.argument("notice_id", type=int)
@as_option
@json_option
@pass_ctx
def notice_show(obj: Context, notice_id: int, token, as_json) -> None:
    """Show a notice (any principal)."""
    if obj.server:
        with obj.client(token) as api:
            data = api.notice(notice_id)
    else:
        from sandbox.workflow.notices import notice_dict

        obj.principal(token)
        with obj.platform.store.read() as conn:
            data = notice_dict(conn, notice_id)
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
@as_option
@json_option
@pass_ctx
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
    if obj.server:
        with obj.client(token) as api:
            aid = api.apply(notice_id, **fields)
    else:
        from sandbox.workflow.applications import apply

        aid = apply(obj.platform, obj.principal(token), notice_id, **fields)
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
@as_option
@json_option
@pass_ctx
def application_show(obj: Context, application_id, token, as_json) -> None:
    """An application (its operator, the notice's authority, its reviewers, auditors)."""
    if obj.server:
        with obj.client(token) as api:
            data = api.application(application_id)
    else:
        from sandbox.workflow.reading import application_for

        me = obj.principal(token)
        with obj.platform.store.read() as conn:
            data = application_for(conn, me, application_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


# --- reviews (Art. 12) ----------------------------------------------------------------------------


@main.group()
def review() -> None:
    """Qualification review of applications. Art. 12."""


@review.command("appoint")
@click.argument("application_id", type=int)
@click.option("--reviewer", "reviewers", multiple=True, required=True)
@as_option
@json_option
@pass_ctx
def review_appoint(obj: Context, application_id, reviewers, token, as_json) -> None:
    """Appoint reviewers to an application (authorities)."""
    if obj.server:
        with obj.client(token) as api:
            ids = api.appoint_reviewers(application_id, list(reviewers))
    else:
        from sandbox.workflow.reviews import appoint

        ids = appoint(obj.platform, obj.principal(token), application_id, reviewers)
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
@as_option
@json_option
@pass_ctx
def review_score(
    obj: Context, application_id, capability, scenario, security, comment, token, as_json
) -> None:
    """Score an application 0-100 on capability, scenario and security (reviewers)."""
    scores = dict(capability=capability, scenario=scenario, security=security, comment=comment)
    if obj.server:
        with obj.client(token) as api:
            state = api.score(application_id, **scores)
    else:
        from sandbox.workflow.reviews import score

        state = score(obj.platform, obj.principal(token), application_id, **scores).value
    emit(
        {"application": application_id, "status": state},
        as_json,
        f"scored; application {application_id} is {state}",
    )


@review.command("show")
@click.argument("application_id", type=int)
@as_option
@json_option
@pass_ctx
def review_show(obj: Context, application_id, token, as_json) -> None:
    """The scores of an application (authorities, auditors)."""
    if obj.server:
        with obj.client(token) as api:
            rows = api.reviews(application_id)
    else:
        from sandbox.workflow.reviews import reviews_of

        rows = reviews_of(obj.platform, obj.principal(token), application_id)
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
@as_option
@json_option
@pass_ctx
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
    if obj.server:
        with obj.client(token) as api:
            aid = api.sign_agreement(application_id, **terms, disposal=disposal)
            if checkers:
                api.appoint_checkers(list(checkers), agreement_id=aid)
    else:
        from sandbox.workflow.agreements import sign
        from sandbox.workflow.airlock import appoint_checkers

        me = obj.principal(token)
        aid = sign(obj.platform, me, application_id, **terms, disposal=Disposal(disposal))
        if checkers:
            appoint_checkers(obj.platform, me, checkers, agreement_id=aid)
    emit(
        {"agreement": aid, "status": "active"},
        as_json,
        f"agreement {aid} signed; active from {start} until {until}",
    )


@agreement.command("show")
@click.argument("agreement_id", type=int)
@as_option
@json_option
@pass_ctx
def agreement_show(obj: Context, agreement_id, token, as_json) -> None:
    """Every field of an agreement (its parties, authorities, auditors)."""
    if obj.server:
        with obj.client(token) as api:
            data = api.agreement(agreement_id)
    else:
        from sandbox.workflow.agreements import agreement_dict

        me = obj.principal(token)
        with obj.platform.store.read() as conn:
            data = agreement_dict(conn, me, agreement_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


def _agreement_action(name: str, help_text: str):
    @agreement.command(name, help=help_text, short_help=help_text.split(" (")[0])
    @click.argument("agreement_id", type=int)
    @click.option("--reason", required=True)
    @as_option
    @json_option
    @pass_ctx
    def command(obj: Context, agreement_id, reason, token, as_json) -> None:
        if obj.server:
            with obj.client(token) as api:
                getattr(api, f"{name}_agreement")(agreement_id, reason)
                status = api.agreement(agreement_id)["status"]
        else:
            from sandbox.workflow import agreements as mod

            me = obj.principal(token)
            getattr(mod, name)(obj.platform, me, agreement_id, reason)
            with obj.platform.store.read() as conn:
                status = mod.agreement_dict(conn, me, agreement_id)["status"]
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
@as_option
@json_option
@pass_ctx
def agreement_expire(obj: Context, agreement_id, token, as_json) -> None:
    """Expire agreements whose term ended and carry out their disposal clause. Art. 13."""
    if obj.server:
        with obj.client(token) as api:
            ids = api.expire_agreements(agreement_id)
    else:
        from sandbox.workflow.agreements import expire

        ids = expire(obj.platform, obj.principal(token), agreement_id)
    emit({"expired": ids}, as_json, f"expired: {', '.join(map(str, ids)) or 'none'}")


# --- data requests and quality (Art. 14) ------------------------------------------------------


@main.group("request")
def request_group() -> None:
    """Data requests under an agreement. Art. 14."""


@request_group.command("data")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--dataset", required=True)
@click.option("--columns", default=None, help="comma-separated (default: the agreement's scope)")
@click.option("--purpose", required=True)
@as_option
@json_option
@pass_ctx
def request_data_cmd(obj: Context, agreement_id, dataset, columns, purpose, token, as_json) -> None:
    """Request a dataset under your agreement (operators)."""
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    if obj.server:
        with obj.client(token) as api:
            rid = api.request_data(agreement_id, dataset, purpose=purpose, columns=cols)
    else:
        from sandbox.workflow.requests import request_data

        rid = request_data(
            obj.platform, obj.principal(token), agreement_id, dataset, purpose=purpose, columns=cols
        )
    emit({"request": rid, "status": "submitted"}, as_json, f"data request {rid} submitted")


@request_group.command("approve")
@click.argument("request_id", type=int)
@as_option
@json_option
@pass_ctx
def request_approve(obj: Context, request_id, token, as_json) -> None:
    """Approve a data request; creates the grant (the dataset's provider or an authority)."""
    if obj.server:
        with obj.client(token) as api:
            gid = api.approve_request(request_id)
    else:
        from sandbox.workflow.requests import approve

        gid = approve(obj.platform, obj.principal(token), request_id)
    emit(
        {"request": request_id, "status": "approved", "grant": gid},
        as_json,
        f"data request {request_id} approved: grant {gid}",
    )


@request_group.command("refuse")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@as_option
@json_option
@pass_ctx
def request_refuse(obj: Context, request_id, reason, token, as_json) -> None:
    """Refuse a data request with a reason."""
    if obj.server:
        with obj.client(token) as api:
            api.refuse_request(request_id, reason)
    else:
        from sandbox.workflow.requests import refuse_request

        refuse_request(obj.platform, obj.principal(token), request_id, reason)
    emit(
        {"request": request_id, "status": "refused"}, as_json, f"data request {request_id} refused"
    )


@main.group()
def quality() -> None:
    """Data-quality tickets. Art. 14."""


@quality.command("report")
@click.option("--dataset", required=True)
@click.option("--text", required=True)
@as_option
@json_option
@pass_ctx
def quality_report(obj: Context, dataset, text, token, as_json) -> None:
    """Report a data-quality problem (operators)."""
    if obj.server:
        with obj.client(token) as api:
            tid = api.report_quality(dataset, text)
    else:
        from sandbox.workflow.requests import report_quality

        tid = report_quality(obj.platform, obj.principal(token), dataset, text)
    emit({"ticket": tid, "status": "open"}, as_json, f"quality ticket {tid} open")


@quality.command("answer")
@click.argument("ticket_id", type=int)
@click.option("--text", required=True)
@click.option("--version", type=int, default=None, help="the dataset version that fixes it")
@as_option
@json_option
@pass_ctx
def quality_answer(obj: Context, ticket_id, text, version, token, as_json) -> None:
    """Answer a quality ticket (the dataset's provider)."""
    if obj.server:
        with obj.client(token) as api:
            api.answer_quality(ticket_id, text, version)
    else:
        from sandbox.workflow.requests import answer_quality

        answer_quality(obj.platform, obj.principal(token), ticket_id, text, version)
    emit(
        {"ticket": ticket_id, "status": "answered"}, as_json, f"quality ticket {ticket_id} answered"
    )


# --- supervision (Art. 21 to 24) ---------------------------------------------------------------


@main.command("evaluate")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--result", type=click.Choice(["pass", "fail"]), required=True)
@click.option("--notes", required=True)
@click.option("--deadline", default=None, help="rectification deadline (required on fail)")
@as_option
@json_option
@pass_ctx
def evaluate_cmd(obj: Context, agreement_id, result, notes, deadline, token, as_json) -> None:
    """Evaluate an operator under an agreement; a failure suspends it (authorities)."""
    verdict = dict(passed=result == "pass", notes=notes, deadline=deadline)
    if obj.server:
        with obj.client(token) as api:
            eid = api.evaluate(agreement_id, **verdict)
    else:
        from sandbox.workflow.supervision import evaluate

        eid = evaluate(obj.platform, obj.principal(token), agreement_id, **verdict)
    word = (
        "passed"
        if result == "pass"
        else f"failed: agreement suspended until rectified (by {deadline})"
    )
    emit(
        {"evaluation": eid, "status": "passed" if result == "pass" else "failed"},
        as_json,
        f"evaluation {eid} {word}",
    )


@main.command("rectify")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--notes", required=True)
@as_option
@json_option
@pass_ctx
def rectify_cmd(obj: Context, agreement_id, notes, token, as_json) -> None:
    """Accept a rectification: the agreement is restored (authorities)."""
    if obj.server:
        with obj.client(token) as api:
            api.rectify(agreement_id, notes)
    else:
        from sandbox.workflow.supervision import rectify

        rectify(obj.platform, obj.principal(token), agreement_id, notes)
    emit(
        {"agreement": agreement_id, "status": "active"},
        as_json,
        f"agreement {agreement_id} rectified and restored",
    )


@main.group()
def incident() -> None:
    """Security incidents. Art. 21."""


@incident.command("report")
@click.option("--operator", required=True)
@click.option("--kind", type=click.Choice(["leak", "damage", "loss"]), required=True)
@click.option("--description", required=True)
@as_option
@json_option
@pass_ctx
def incident_report(obj: Context, operator, kind, description, token, as_json) -> None:
    """Report a leak, damage or loss: the operator's data use is suspended at once."""
    if obj.server:
        with obj.client(token) as api:
            data = api.report_incident(operator, kind, description)
    else:
        from sandbox.workflow.supervision import IncidentKind, report_incident

        data = report_incident(
            obj.platform, obj.principal(token), operator, IncidentKind(kind), description
        )
    emit(
        data,
        as_json,
        f"incident {data['incident']}: agreements suspended: "
        f"{data['suspended'] or 'none'}; authorities notified",
    )


@main.command("inspect")
@click.option("--operator", required=True)
@click.option("--finding", "findings", multiple=True, required=True)
@click.option("--task", "tasks", multiple=True, help="a rectification task (repeat)")
@click.option("--deadline", default=None)
@as_option
@json_option
@pass_ctx
def inspect_cmd(obj: Context, operator, findings, tasks, deadline, token, as_json) -> None:
    """Record an inspection's findings and rectification tasks (authorities). Art. 22."""
    if obj.server:
        with obj.client(token) as api:
            iid = api.inspect(operator, list(findings), list(tasks), deadline)
    else:
        from sandbox.workflow.supervision import inspect

        iid = inspect(obj.platform, obj.principal(token), operator, findings, tasks, deadline)
    emit({"inspection": iid}, as_json, f"inspection {iid} recorded")


@main.command("notifications")
@as_option
@json_option
@pass_ctx
def notifications_cmd(obj: Context, token, as_json) -> None:
    """Your notifications (failed evaluations, incidents, inspection tasks)."""
    if obj.server:
        with obj.client(token) as api:
            rows = api.notifications()
    else:
        from sandbox.workflow.supervision import notifications_of

        rows = notifications_of(obj.platform, obj.principal(token))
    emit(
        rows,
        as_json,
        table(
            [(r["id"], r["kind"], r["subject"]) for r in rows],
            ("id", "kind", "subject"),
            right=("id",),
            empty="(no notifications)",
        ),
    )


# --- feedback and usage (Art. 16) ---------------------------------------------------------------


@main.command("feedback")
@click.argument("product_id")
@click.option("--rating", type=int, required=True, help="1 to 5")
@click.option("--comment", default="")
@as_option
@json_option
@pass_ctx
def feedback_cmd(obj: Context, product_id, rating, comment, token, as_json) -> None:
    """Rate and comment on a product (consumers)."""
    if obj.server:
        with obj.client(token) as api:
            fid = api.give_feedback(product_id, rating, comment)
    else:
        from sandbox.workflow.feedback import give

        fid = give(obj.platform, obj.principal(token), product_id, rating, comment)
    emit({"feedback": fid}, as_json, f"feedback {fid} on {product_id} recorded")


@main.group()
def report() -> None:
    """Reports drawn from the ledger."""


@report.command("usage")
@click.option("--operator", required=True)
@click.option("--period", required=True, help="2026-Q3, 2026-07 or 2026")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="folder for usage.json, usage.csv, usage.png (default: usage-OPERATOR-PERIOD)",
)
@as_option
@json_option
@pass_ctx
def report_usage(obj: Context, operator, period, out, token, as_json) -> None:
    """An operator's usage report: jobs, refusals, products, verifications, feedback."""
    folder = out or Path(f"usage-{operator}-{period}")
    if obj.server:
        with obj.client(token) as api:
            got = api.usage_report(operator, period)
        data, files = got.report, got.write(folder)
    else:
        from sandbox.workflow.usage import usage_report, write_report

        me = obj.principal(token)
        data = usage_report(obj.platform, me, operator, period)
        files = write_report(obj.platform, me, data, folder)
    emit(
        {**data, "files": files},
        as_json,
        "\n".join(
            [
                f"{operator} {period}: " + ", ".join(f"{k} {v}" for k, v in data["totals"].items()),
                *files.values(),
            ]
        ),
    )


# --- output review (the airlock) ----------------------------------------------------------------


@main.group()
def output() -> None:
    """Output review: two independent checkers release held outputs."""


@output.command("appoint")
@click.option("--agreement", "agreement_id", type=int, default=None)
@click.option("--job", "job_id", type=int, default=None)
@click.option("--checker", "checkers", multiple=True, required=True)
@as_option
@json_option
@pass_ctx
def output_appoint(obj: Context, agreement_id, job_id, checkers, token, as_json) -> None:
    """Appoint two checkers for an agreement's (or one job's) held outputs (authorities)."""
    if obj.server:
        with obj.client(token) as api:
            ids = api.appoint_checkers(list(checkers), agreement_id=agreement_id, job_id=job_id)
    else:
        from sandbox.workflow.airlock import appoint_checkers

        ids = appoint_checkers(
            obj.platform, obj.principal(token), checkers, agreement_id=agreement_id, job_id=job_id
        )
    emit({"appointments": ids}, as_json, f"{len(ids)} checkers appointed")


@output.command("review")
@click.argument("job_id", type=int)
@as_option
@json_option
@pass_ctx
def output_review(obj: Context, job_id, token, as_json) -> None:
    """Open (if needed) and show the review of a withheld job; votes stay sealed until both."""
    if obj.server:
        with obj.client(token) as api:
            data = api.open_review(job_id)
    else:
        from sandbox.workflow.airlock import open_review

        data = open_review(obj.platform, obj.principal(token), job_id)
    emit(data, as_json, f"job {job_id}: {data['status']} ({data['votes_in']} of 2 votes in)")


@output.command("vote")
@click.argument("job_id", type=int)
@click.option("--decision", type=click.Choice([v.value for v in Vote]), required=True)
@click.option("--reason", required=True)
@as_option
@json_option
@pass_ctx
def output_vote(obj: Context, job_id, decision, reason, token, as_json) -> None:
    """Approve, return or reject a held output, with a reason (appointed checkers)."""
    if obj.server:
        with obj.client(token) as api:
            data = api.vote(job_id, decision, reason)
    else:
        from sandbox.workflow.airlock import vote

        data = vote(obj.platform, obj.principal(token), job_id, Vote(decision), reason)
    emit(
        data,
        as_json,
        f"job {job_id}: {data['status']}"
        + (f", product {data['product']}" if data.get("product") else ""),
    )
