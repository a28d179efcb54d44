"""``sandbox model ...`` and ``sandbox score ...``: models and scoring services (docs/models.md).

``model train`` (operator), ``model show`` and ``model list``; ``model export``
(operator), ``model approve-export`` / ``model reject-export`` (authority) and
``model exports``; ``score define``
(operator), ``score approve`` / ``score reject`` (authority), ``score call`` (consumer)
and ``score list``. They parse options, call :meth:`sandbox.cli.common.Context.backend`
(:mod:`sandbox.models` on the platform's host, or the routes of ``/v1/models`` and
``/v1/score`` with ``--server``) and print.
"""

from __future__ import annotations

from pathlib import Path

import click

from policies.errors import InputError
from sandbox.cli.common import (
    Context,
    as_principal,
    definition_option,
    emit,
    main,
    read_json_lines,
    table,
)
from sandbox.cli.offerings import add_decisions


def _card_text(card: dict) -> str:
    ev = card.get("evaluation", {})
    lines = [
        f"model {card['name']}: {card['verdict'].upper()} ({card['algorithm']})",
        f"  held-out: AUC {ev.get('auc')}, KS {ev.get('ks')}, calibration error "
        f"{ev.get('calibration_error')} on {ev.get('holdout_entities')} entities",
    ]
    for finding in card.get("structure", []) + card.get("attacks", {}).get("findings", []):
        mark = "ok  " if finding["passed"] else "FAIL"
        lines.append(f"  {mark} {finding['rule']}: {finding['message']}")
    return "\n".join(lines)


@main.group()
def model() -> None:
    """Models trained inside, judged before use, kept inside (Art. 4, 15)."""


@model.command("train")
@definition_option("name, features, label, algorithm[, params, holdout, seed, description]")
@as_principal
def train_cmd(obj: Context, definition: dict, token, as_json) -> None:
    """Train a model in an isolated worker, judge it and sign its card (operator)."""
    with obj.backend(token) as backend:
        out = backend.train_model(definition)
    emit(out, as_json, _card_text(out["card"]))


@model.command("show")
@click.argument("name")
@as_principal
def show_cmd(obj: Context, name: str, token, as_json) -> None:
    """A model's signed card (its operator, authorities, auditors)."""
    with obj.backend(token) as backend:
        out = backend.show_model(name)
    emit(out, as_json, _card_text(out["card"]) + f"\n  state: {out['state']}")


@model.command("list")
@as_principal
def list_cmd(obj: Context, token, as_json) -> None:
    """Models you may see."""
    with obj.backend(token) as backend:
        rows = backend.list_models()
    text = table(
        [(r["name"], r["state"], r["algorithm"], r["auc"], r["created_at"]) for r in rows],
        ("model", "state", "algorithm", "auc", "trained"),
        empty="no models",
    )
    emit(rows, as_json, text)


@model.command("export")
@click.argument("name")
@as_principal
def export_cmd(obj: Context, name: str, token, as_json) -> None:
    """Ask to export a passed model's file as a product (operator); an authority approves."""
    with obj.backend(token) as backend:
        out = backend.export_model(name)
    emit(out, as_json, f"export of {name} requested under agreement {out['agreement']}; "
         "waiting for the authority's approval")  # fmt: skip


@model.command("approve-export")
@click.argument("name")
@as_principal
def approve_export_cmd(obj: Context, name: str, token, as_json) -> None:
    """Approve a model's export: its product is written (an authority covering the agreement)."""
    with obj.backend(token) as backend:
        out = backend.approve_model_export(name)
    emit(out, as_json, f"export of {name} approved: product {out['product']}")


@model.command("reject-export")
@click.argument("name")
@click.option("--reason", required=True)
@as_principal
def reject_export_cmd(obj: Context, name: str, reason: str, token, as_json) -> None:
    """Reject a model's export, saying why (an authority covering the agreement)."""
    with obj.backend(token) as backend:
        backend.reject_model_export(name, reason)
    emit({"name": name, "state": "rejected", "reason": reason}, as_json, f"rejected {name}")


@model.command("exports")
@as_principal
def exports_cmd(obj: Context, token, as_json) -> None:
    """Exports of model files you may see."""
    with obj.backend(token) as backend:
        rows = backend.model_exports()
    text = table(
        [(r["name"], r["state"], r["agreement"], r["product"] or "-") for r in rows],
        ("model", "state", "agreement", "product"),
        empty="no model exports",
    )
    emit(rows, as_json, text)


@main.group()
def score() -> None:
    """Scoring services: a grade of declared bands for one subject, with consent (Art. 19)."""


@score.command("define")
@definition_option("name, model, bands (each grade, upto)[, description]")
@as_principal
def define_cmd(obj: Context, definition: dict, token, as_json) -> None:
    """Define a scoring service over a passed model (operator); it waits for approval."""
    with obj.backend(token) as backend:
        out = backend.define_score_service(definition)
    sizes = ", ".join(str(n) for n in out["band_sizes"])
    emit(out, as_json, f"defined {out['name']} (entities per band: {sizes}); waiting for approval")


add_decisions(
    score,
    noun="scoring service",
    key="service",
    approve=lambda backend, name: backend.approve_score_service(name),
    reject=lambda backend, name, reason: backend.reject_score_service(name, reason),
    published=lambda name, out: f"published {name}: {out['index_rows']} subjects graded",
    builds="its grade index",
)


@score.command("call")
@click.argument("service")
@click.option("--key", help="the subject's key (e.g. its credit code)")
@click.option(
    "--batch",
    type=click.Path(path_type=Path, exists=True),
    help='JSON lines, one {"key": ...[, "consent": {...}]} per subject (up to 1,000)',
)
@click.option("--consent-ref", help="your reference to the subject's consent record (Art. 19)")
@click.option("--consent-who", default="subject", show_default=True, help="who consented")
@click.option("--purpose", help="the purpose the subject consented to")
@click.option("--consented-at", help="when, ISO date")
@as_principal
def call_cmd(
    obj: Context, service, key, batch, consent_ref, consent_who, purpose, consented_at,
    token, as_json,
) -> None:  # fmt: skip
    """Grade one subject (--key) or a batch (--batch FILE) (consumer)."""
    consent = None
    if consent_ref or purpose or consented_at:
        consent = {
            "reference": consent_ref or "",
            "who": consent_who,
            "purpose": purpose or "",
            "given_at": consented_at or "",
        }
    if batch is not None:
        items = read_json_lines(batch)
    elif key:
        items = [{"key": key}]
    else:
        raise InputError("give --key KEY (one subject) or --batch FILE")
    with obj.backend(token) as backend:
        result = backend.grade(service, items, consent)
    lines = [
        r["code"] if r["code"] else f"refused [{r['refused']}]: {r['message']}"
        for r in result["results"]
    ]
    emit(result, as_json, "\n".join(lines) + f"\n(request {result['request_id']})")


@score.command("who")
@click.option("--key", required=True, help="the subject's key (hashed as at call time)")
@click.option("--service", help="only this service")
@as_principal
def who_cmd(obj: Context, key: str, service: str | None, token, as_json) -> None:
    """Who graded this subject? (auditor, authority)"""
    with obj.backend(token) as backend:
        rows = backend.who_scored(key, service)
    text = table(
        [
            (r["ts"], r["consumer"], r["service"], r["grade"] or r["refused"],
             (r["consent"] or {}).get("reference", "-"), r["ledger_seq"])
            for r in rows
        ],
        ("time", "consumer", "service", "answer", "consent", "ledger"),
        empty="no scoring call about this subject",
    )  # fmt: skip
    emit(rows, as_json, text)


@score.command("list")
@as_principal
def services_cmd(obj: Context, token, as_json) -> None:
    """Scoring services you may see."""
    with obj.backend(token) as backend:
        rows = backend.score_services()
    text = table(
        [(r["name"], r["state"], r["model"], " ".join(r["grades"])) for r in rows],
        ("service", "state", "model", "grades"),
        empty="no scoring services",
    )
    emit(rows, as_json, text)


@main.command("demo-loans")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="the folder sandbox demo-data wrote",
)
@click.option("--seed", type=int, default=11, show_default=True)
def demo_loans(data_dir: Path, seed: int) -> None:
    """Write loans.csv: a synthetic loan book of the demo's enterprises with a default label."""
    from sandbox.demo.loans import write_loan_book

    click.echo(str(write_loan_book(data_dir, seed)))
