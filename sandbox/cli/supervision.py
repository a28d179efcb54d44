"""The workflow's commands after the agreement (Art. 14, 16, 21 to 24): data requests,
quality tickets, evaluations and their materials, rectifications, incidents, inspections,
the inbox, providers' holds on the use of their data, feedback, usage reports and output
review (the security records of Art. 20, 21 are in :mod:`sandbox.cli.duties`). Added to
``sandbox`` by :mod:`sandbox.cli.app`.

Like :mod:`sandbox.cli.workflow`, each command parses its options, calls
:meth:`sandbox.cli.common.Context.backend` and prints; the files of a usage report are
written on this machine either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from policies.workflow import Vote
from sandbox.cli.common import (
    Context,
    as_principal,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)
from sandbox.cli.jobs import product

# --- data requests and quality (Art. 14) ------------------------------------------------------


@main.group("request")
def request_group() -> None:
    """Data requests under an agreement. Art. 14."""


@request_group.command("data")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--dataset", required=True)
@click.option("--columns", default=None, help="comma-separated (default: the agreement's scope)")
@click.option("--purpose", required=True)
@as_principal
def request_data_cmd(obj: Context, agreement_id, dataset, columns, purpose, token, as_json) -> None:
    """Request a dataset under your agreement (operators)."""
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    with obj.backend(token) as backend:
        rid = backend.request_data(agreement_id, dataset, purpose=purpose, columns=cols)
    emit({"request": rid, "status": "submitted"}, as_json, f"data request {rid} submitted")


@request_group.command("approve")
@click.argument("request_id", type=int)
@as_principal
def request_approve(obj: Context, request_id, token, as_json) -> None:
    """Approve a data request; creates the grant (the dataset's provider or an authority)."""
    with obj.backend(token) as backend:
        gid = backend.approve_request(request_id)
    emit(
        {"request": request_id, "status": "approved", "grant": gid},
        as_json,
        f"data request {request_id} approved: grant {gid}",
    )


@request_group.command("refuse")
@click.argument("request_id", type=int)
@click.option("--reason", required=True)
@as_principal
def request_refuse(obj: Context, request_id, reason, token, as_json) -> None:
    """Refuse a data request with a reason."""
    with obj.backend(token) as backend:
        backend.refuse_request(request_id, reason)
    emit(
        {"request": request_id, "status": "refused"}, as_json, f"data request {request_id} refused"
    )


@main.group()
def quality() -> None:
    """Data-quality tickets. Art. 14."""


@quality.command("report")
@click.option("--dataset", required=True)
@click.option("--text", required=True)
@as_principal
def quality_report(obj: Context, dataset, text, token, as_json) -> None:
    """Report a data-quality problem (operators)."""
    with obj.backend(token) as backend:
        tid = backend.report_quality(dataset, text)
    emit({"ticket": tid, "status": "open"}, as_json, f"quality ticket {tid} open")


@quality.command("answer")
@click.argument("ticket_id", type=int)
@click.option("--text", required=True)
@click.option("--version", type=int, default=None, help="the dataset version that fixes it")
@as_principal
def quality_answer(obj: Context, ticket_id, text, version, token, as_json) -> None:
    """Answer a quality ticket (the dataset's provider)."""
    with obj.backend(token) as backend:
        backend.answer_quality(ticket_id, text, version)
    emit(
        {"ticket": ticket_id, "status": "answered"}, as_json, f"quality ticket {ticket_id} answered"
    )


# --- supervision (Art. 21 to 24) ---------------------------------------------------------------


@main.command("evaluate")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--result", type=click.Choice(["pass", "fail"]), required=True)
@click.option("--notes", required=True)
@click.option("--deadline", default=None, help="rectification deadline (required on fail)")
@click.option(
    "--material",
    "materials",
    type=int,
    multiple=True,
    help="a material considered, by id (repeat; 'evaluation materials AGREEMENT')",
)
@click.option("--score", type=int, default=None, help="0 to 100")
@as_principal
def evaluate_cmd(obj: Context, agreement_id, result, notes, deadline, materials, score, token,
                 as_json) -> None:  # fmt: skip
    """Evaluate an operator under an agreement; a failure suspends it (authorities)."""
    verdict = dict(passed=result == "pass", notes=notes, deadline=deadline, score=score)
    with obj.backend(token) as backend:
        eid = backend.evaluate(agreement_id, **verdict, materials=list(materials))
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


@main.group("evaluation")
def evaluation_group() -> None:
    """Evaluations (``sandbox evaluate`` records one) and the materials operators submit
    for them. Art. 23, 24."""


@evaluation_group.command("submit")
@click.argument("agreement_id", type=int)
@click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    required=True,
    help="a document: self-assessment, security report ... (at most 20 MiB)",
)
@click.option("--title", required=True)
@as_principal
def evaluation_submit(obj: Context, agreement_id, path, title, token, as_json) -> None:
    """Submit a material for the evaluation of your agreement (operators)."""
    with obj.backend(token) as backend:
        data = backend.submit_material(agreement_id, path, title)
    emit(data, as_json, f"material {data['id']} submitted for agreement {agreement_id}: "
         f"{data['filename']} ({data['bytes']} bytes, sha256 {data['sha256']})")  # fmt: skip


@evaluation_group.command("materials")
@click.argument("agreement_id", type=int)
@as_principal
def evaluation_materials(obj: Context, agreement_id, token, as_json) -> None:
    """The materials submitted for an agreement (its operator, its authorities, auditors)."""
    with obj.backend(token) as backend:
        rows = backend.materials(agreement_id)
    emit(rows, as_json, table(
        [(m["id"], m["title"][:40], m["filename"][:30], m["bytes"], m["submitted_at"][:10],
          ", ".join(map(str, m["considered_by"])) or "-") for m in rows],
        ("id", "title", "file", "bytes", "submitted", "evaluations"),
        right=("id", "bytes"),
        empty="(no materials)",
    ))  # fmt: skip


@evaluation_group.command("download")
@click.argument("material_id", type=int)
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="the folder to save it in, under its own name")  # fmt: skip
@as_principal
def evaluation_download(obj: Context, material_id, out, token, as_json) -> None:
    """Save a material's file, checked against its recorded SHA-256."""
    with obj.backend(token) as backend:
        data = backend.download_material(material_id, out)
    emit(data, as_json, f"material {material_id} saved to {data['path']}")


@evaluation_group.command("show")
@click.argument("evaluation_id", type=int)
@as_principal
def evaluation_show(obj: Context, evaluation_id, token, as_json) -> None:
    """An evaluation: result, notes, score, figures and the materials it considered."""
    with obj.backend(token) as backend:
        data = backend.evaluation(evaluation_id)
    emit(data, as_json, json.dumps(data, indent=2, ensure_ascii=False))


@main.command("rectify")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--notes", required=True)
@as_principal
def rectify_cmd(obj: Context, agreement_id, notes, token, as_json) -> None:
    """Accept a rectification: the agreement is restored (authorities)."""
    with obj.backend(token) as backend:
        backend.rectify(agreement_id, notes)
    emit(
        {"agreement": agreement_id, "status": "active"},
        as_json,
        f"agreement {agreement_id} rectified and restored",
    )


# sandbox.workflow.supervision.IncidentKind, named here so the CLI starts without the workflow
INCIDENT_KINDS = ["leak", "damage", "loss", "misuse"]


@main.group()
def incident() -> None:
    """Security incidents. Art. 21."""


@incident.command("report")
@click.option("--operator", default=None, help="the operator (operators and authorities)")
@click.option("--product", default=None, help="a product that reached you (consumers)")
@click.option("--kind", type=click.Choice(INCIDENT_KINDS), required=True)
@click.option("--description", required=True)
@as_principal
def incident_report(obj: Context, operator, product, kind, description, token, as_json) -> None:
    """Report a leak, damage, loss or misuse. --operator: the operator's data use is
    suspended at once. --product (consumers): its operator, authority and providers are
    told, and the authority decides; nothing is suspended on a consumer's word."""
    with obj.backend(token) as backend:
        data = backend.report_incident(operator, kind, description, product)
    told = (
        f"incident {data['incident']} on product {product}: its operator, authority and "
        "providers notified; nothing suspended"
        if product
        else f"incident {data['incident']}: agreements suspended: "
        f"{data['suspended'] or 'none'}; authorities notified"
    )
    emit(data, as_json, told)


@main.command("inspect")
@click.option("--operator", required=True)
@click.option("--finding", "findings", multiple=True, required=True)
@click.option("--task", "tasks", multiple=True, help="a rectification task (repeat)")
@click.option("--deadline", default=None)
@as_principal
def inspect_cmd(obj: Context, operator, findings, tasks, deadline, token, as_json) -> None:
    """Record an inspection's findings and rectification tasks (authorities). Art. 22."""
    with obj.backend(token) as backend:
        iid = backend.inspect(operator, list(findings), list(tasks), deadline)
    emit({"inspection": iid}, as_json, f"inspection {iid} recorded")


@main.command("inbox")
@click.option("--limit", type=int, default=50, show_default=True, help="at most this many")
@click.option("--before", type=int, default=None, help="older than this notification id")
@click.option("--kind", default=None, help="only this kind, e.g. data_request_refused")
@as_principal
def inbox_cmd(obj: Context, limit, before, kind, token, as_json) -> None:
    """Your notifications, newest first: every decision that concerns you (refused
    requests, review results, suspensions, terminations, expiry, quality tickets,
    incidents, inspection tasks). Page with --before NEXT, as the last line says."""
    with obj.backend(token) as backend:
        page = backend.inbox(limit, before, kind)
    rows = page["items"]
    more = f"\nmore: --before {page['next_before']}" if page["next_before"] else ""
    emit(
        page,
        as_json,
        table(
            [(r["id"], r["kind"], r["subject"], r["created_at"][:16].replace("T", " "))
             for r in rows],
            ("id", "kind", "subject", "at (UTC)"),
            right=("id",),
            empty="(no notifications)",
        )
        + more,
    )  # fmt: skip


@main.command("tick")
@json_option
@pass_ctx
def tick_cmd(obj: Context, as_json) -> None:
    """Host only: expire the agreements whose term has ended and carry out their disposal
    clauses, as the platform (Art. 13), and remind operators of usage reports, trainings
    and drills, and authorities of evaluations, due on their agreements' schedules with
    nothing on record (Art. 16, 20, 21, 23). The server does this every minute; a host
    without one runs it from cron. Running it again does nothing more."""
    from sandbox.models.services import dispose_ended
    from sandbox.verification.disposal import dispose_indexes
    from sandbox.workflow.scheduler import tick

    done = tick(obj.platform)
    done["indexes_deleted"] = dispose_indexes(obj.platform)
    done["models_disposed"] = dispose_ended(obj.platform)
    disposed = sum(len(v) for v in done["disposed"].values())
    text = (
        f"expired agreements: {', '.join(map(str, done['expired'])) or 'none'}; products "
        f"disposed: {disposed}; verification indexes deleted: {len(done['indexes_deleted'])}; "
        f"usage reports reminded: {len(done['reminded'])}; trainings, drills and "
        f"evaluations reminded: {len(done['duties_reminded'])}"
        if done["expired"] or done["indexes_deleted"] or done["reminded"] or done["duties_reminded"]
        else "nothing is due"
    )
    emit(done, as_json, text)


# --- feedback and usage (Art. 16) ---------------------------------------------------------------


@product.command("deliver")
@click.argument("product_id")
@click.option("--to", "consumer", required=True, help="the consumer's name")
@click.option("--note", default="", help="what it is for")
@as_principal
def product_deliver(obj: Context, product_id, consumer, note, token, as_json) -> None:
    """Deliver your product to a named consumer, who may then list, download and give
    feedback on it (operators, Art. 15)."""
    with obj.backend(token) as backend:
        did = backend.deliver_product(product_id, consumer, note)
    emit({"delivery": did, "product": product_id, "consumer": consumer}, as_json,
         f"product {product_id} delivered to {consumer} (delivery {did})")  # fmt: skip


@main.command("feedback")
@click.argument("product_id")
@click.option("--quality", type=int, required=True, help="the product's quality, 1 to 5")
@click.option("--use", "use_", type=int, required=True, help="how you used it, 1 to 5")
@click.option("--effect", type=int, required=True, help="what it did for you, 1 to 5")
@click.option("--comment", default="")
@as_principal
def feedback_cmd(obj: Context, product_id, quality, use_, effect, comment, token, as_json) -> None:
    """Feedback on a product delivered to you: its quality, use and effect (consumers,
    Art. 16)."""
    points = {"quality": quality, "use": use_, "effect": effect}
    with obj.backend(token) as backend:
        fid = backend.give_feedback(product_id, points, comment)
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
@as_principal
def report_usage(obj: Context, operator, period, out, token, as_json) -> None:
    """An operator's usage report: jobs, refusals, products, verifications, feedback."""
    folder = out or Path(f"usage-{operator}-{period}")
    with obj.backend(token) as backend:
        data, files = backend.usage_report(operator, period, folder)
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
@as_principal
def output_appoint(obj: Context, agreement_id, job_id, checkers, token, as_json) -> None:
    """Appoint two checkers for an agreement's (or one job's) held outputs (authorities)."""
    with obj.backend(token) as backend:
        ids = backend.appoint_checkers(list(checkers), agreement_id=agreement_id, job_id=job_id)
    emit({"appointments": ids}, as_json, f"{len(ids)} checkers appointed")


@output.command("review")
@click.argument("job_id", type=int)
@as_principal
def output_review(obj: Context, job_id, token, as_json) -> None:
    """Open (if needed) and show the review of a withheld job; votes stay sealed until both."""
    with obj.backend(token) as backend:
        data = backend.open_review(job_id)
    emit(data, as_json, f"job {job_id}: {data['status']} ({data['votes_in']} of 2 votes in)")


@output.command("vote")
@click.argument("job_id", type=int)
@click.option("--decision", type=click.Choice([v.value for v in Vote]), required=True)
@click.option("--reason", required=True)
@as_principal
def output_vote(obj: Context, job_id, decision, reason, token, as_json) -> None:
    """Approve, return or reject a held output, with a reason (appointed checkers)."""
    with obj.backend(token) as backend:
        data = backend.vote(job_id, decision, reason)
    emit(
        data,
        as_json,
        f"job {job_id}: {data['status']}"
        + (f", product {data['product']}" if data.get("product") else ""),
    )
