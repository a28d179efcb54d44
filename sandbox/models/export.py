"""Export of a model file (issue 22): a passed model leaves as a product, only when its
agreement allows it and an authority approved.

Two steps, like a verification product's, each one ledger entry ``model.export_<state>``::

    operator asks (sandbox model export NAME)           -> requested
    authority approves (sandbox model approve-export)   -> approved: the product is written
    authority rejects, with a reason                    -> rejected (the operator may ask again)
    the agreement ends with a delete clause             -> disposed

The rule, checked when the operator asks and again when the authority approves
(:func:`require_exportable`); each refusal names its rule and article:

* ``model_not_passed`` (Art. 15, only vetted products leave): the model's card has the
  verdict ``passed`` and every finding of it passed, structure and attacks; a refused or
  disposed model never leaves. ``model_file_missing`` (Art. 15): a model trained before
  exports were built kept no numbers; train it again.
* ``agreement_required`` (Art. 13): the model was trained under an operation agreement
  (the agreement of its first dataset's grant, as for scoring services), not a direct
  grant.
* ``product_kind_not_agreed`` (Art. 4, the forms of products): the agreement's scope
  names ``model`` among its product kinds. The scope is the application's, copied when
  the agreement is signed (``agreements.scope_json``), so the authority that signed
  saw it.
* ``agreement_not_active`` (Art. 13): the agreement is active, and its grants of the
  model's datasets are in force for ``model_train`` now (the grants gate of
  :func:`sandbox.data.grants.may_run` over that agreement's grants, whose refusals name
  their own rules: ``grant_suspended``, ``not_granted``, ...).
* the approval: only an authority whose jurisdiction covers the agreement's
  (``PermissionDenied``, Art. 5); the operator cannot approve its own export.

The product is a folder ``products/<id>`` like a report's (:mod:`sandbox.data.release`):
``model.onnx`` and ``model.json`` (:mod:`sandbox.models.portable`), ``card.json`` (the
signed card) and ``manifest.json`` with the SHA-256 of every file, signed with the
platform's key in ``manifest.sig``, so ``sandbox product verify`` checks every byte. It
is recorded as the released product of a ``model_train`` job of the operator, whose
inputs are the model's datasets under the grants in force, so every rule of products
holds unchanged: the operator's list and downloads while the grants are in force,
delivery to consumers, a county authority's scope, and the agreement's disposal clause.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.model import KIND
from policies.access import Grant, decide
from policies.errors import Conflict, InputError, IntegrityError, NotFound, PolicyRefusal
from policies.job_states import JobState
from policies.workflow import AgreementState
from sandbox.core import keys
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.storage import sha256_file
from sandbox.core.store import inserted_id, jobs
from sandbox.data.grants import grants_of
from sandbox.data.release import MANIFEST, SIGNATURE, Written, place_product
from sandbox.models import portable
from sandbox.models.card import verify_card
from sandbox.models.service import model_row
from sandbox.models.tables import model_exports, model_files
from sandbox.registry.base import require_authority
from sandbox.registry.jurisdiction import scope_of
from sandbox.registry.tables import agreements
from sandbox.registry.terms import terms_of

FILES = ("model.onnx", "model.json", "card.json")


class ExportState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISPOSED = "disposed"


def _refuse(rule: str, message: str, article: str, name: str, hint: str | None = None):
    return PolicyRefusal(rule, message, article=article, subject=name, hint=hint)


def require_exportable(conn: Connection, operator: Principal, name: str) -> dict[str, Any]:
    """The rule of the module, for the operator's model ``name``; its grants in force."""
    model = model_row(conn, name)
    if model.operator_id != operator.id:
        raise NotFound(f"no model '{name}'")
    card = json.loads(model.card_json)
    findings = [*card.get("structure", []), *card.get("attacks", {}).get("findings", [])]
    failed = [f["rule"] for f in findings if not f.get("passed")]
    if model.status != "passed" or card.get("verdict") != "passed" or failed or not findings:
        raise _refuse(
            "model_not_passed",
            f"model '{name}' is {model.status}"
            + (f" (failed: {', '.join(failed)})" if failed else "")
            + "; only a model that passed every check, structure and attacks, is exported",
            "Art. 15",
            name,
        )
    if model.agreement_id is None:
        raise _refuse(
            "agreement_required",
            f"model '{name}' was trained under a direct grant; a model file is exported only "
            "under an operation agreement that names the product kind 'model'",
            "Art. 13",
            name,
        )
    agreement = conn.execute(select(agreements).where(agreements.c.id == model.agreement_id)).one()
    kinds = json.loads(agreement.scope_json).get("product_kinds", [])
    if "model" not in kinds:
        raise _refuse(
            "product_kind_not_agreed",
            f"agreement {agreement.id} allows the product kinds {', '.join(kinds) or 'none'}, "
            "not 'model': a model file is a product form of its own",
            "Art. 4",
            name,
            hint="apply under a notice with --product-kind model for an agreement that allows it",
        )
    if agreement.status != AgreementState.ACTIVE.value:
        raise _refuse(
            "agreement_not_active",
            f"agreement {agreement.id} is {agreement.status}; nothing made under it leaves",
            "Art. 13",
            name,
        )
    grants = _grants(conn, operator, model)
    kept = conn.execute(select(model_files).where(model_files.c.name == name)).first()
    if kept is None:
        raise _refuse(
            "model_file_missing",
            f"model '{name}' was trained before exports were built and kept no model file",
            "Art. 15",
            name,
            hint="train it again under the same agreement",
        )
    return {"model": model, "card": card, "agreement": agreement, "grants": grants, "kept": kept}


def _grants(conn: Connection, operator: Principal, model) -> dict[str, Grant]:
    """The grants gate (:func:`policies.access.decide`, as :func:`sandbox.data.grants.may_run`)
    over the grants of the model's own agreement only: the export is that agreement's
    product, so its disposal clause is the one that removes it."""
    mine = [g for g in grants_of(conn, operator.id) if g.agreement_id == model.agreement_id]
    tables = list(json.loads(model.versions_json))
    terms = terms_of(conn, [model.agreement_id])
    return decide(mine, operator.id, tables, KIND, datetime.now(UTC), terms)


def _row(conn: Connection, name: str):
    row = conn.execute(select(model_exports).where(model_exports.c.name == name)).first()
    if row is None:
        raise NotFound(f"no export of model '{name}' was asked for")
    return row


def _move(
    platform: Platform, conn: Connection, name: str, new: ExportState, actor: Actor,
    details: dict[str, Any], article: str, **values: Any,
) -> None:  # fmt: skip
    conn.execute(
        model_exports.update()
        .where(model_exports.c.name == name)
        .values(status=new.value, updated_at=now_utc(), **values)
    )
    platform.record(conn, actor, f"model.export_{new.value}", f"model:{name}", details, article)


def request_export(platform: Platform, operator: Principal, name: str) -> dict[str, Any]:
    """The operator asks to export its passed model; an authority decides."""
    require_role(operator, Role.OPERATOR, action="export models", article="Art. 15")
    with platform.store.transaction() as conn:
        found = require_exportable(conn, operator, name)
        agreement_id = found["agreement"].id
        row = conn.execute(select(model_exports).where(model_exports.c.name == name)).first()
        details = {"agreement": agreement_id, "model_sha256": found["card"]["model_sha256"]}
        if row is None:
            stamp = now_utc()
            conn.execute(
                model_exports.insert().values(
                    name=name, operator_id=operator.id, agreement_id=agreement_id,
                    status=ExportState.REQUESTED.value, created_at=stamp, updated_at=stamp,
                )
            )  # fmt: skip
            platform.record(
                conn, operator.actor, "model.export_requested", f"model:{name}", details, "Art. 15"
            )
        elif row.status == ExportState.REJECTED.value:
            _move(platform, conn, name, ExportState.REQUESTED, operator.actor, details, "Art. 15",
                  reason=None, decided_by=None)  # fmt: skip
        else:
            raise Conflict(f"the export of model '{name}' is {row.status} already")
    return {"name": name, "state": ExportState.REQUESTED.value, "agreement": agreement_id}


def _decidable(conn: Connection, authority: Principal, name: str, action: str):
    require_role(authority, Role.AUTHORITY, action=action, article="Art. 15")
    row = _row(conn, name)
    agreement = conn.execute(select(agreements).where(agreements.c.id == row.agreement_id)).one()
    require_authority(authority, agreement.jurisdiction, action, "Art. 15")
    if row.status != ExportState.REQUESTED.value:
        raise Conflict(f"the export of model '{name}' is {row.status}; nothing to decide")
    return row


def approve_export(platform: Platform, authority: Principal, name: str) -> dict[str, Any]:
    """An authority covering the agreement approves: the rule again, then the product."""
    with platform.store.transaction() as conn:
        row = _decidable(conn, authority, name, "approve model exports")
        operator = by_id(conn, row.operator_id)
        found = require_exportable(conn, operator, name)
        verify_card(platform, found["card"], found["model"].signature)
        arrays = json.loads(found["kept"].arrays_json)
        if portable.model_sha256(arrays) != found["card"]["model_sha256"]:
            raise IntegrityError(f"model '{name}': its kept numbers are not those its card signed")
        job_id = _job(conn, operator, name, found)
        product_id = f"prod-{job_id:06d}"
        written = _write(platform, product_id, found, arrays, authority)
        place_product(platform, conn, written, job_id=job_id, operator=operator)
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(product_id=product_id))
        _move(
            platform, conn, name, ExportState.APPROVED, authority.actor,
            {"product": product_id, "job": job_id, "agreement": row.agreement_id,
             "manifest_files": sorted(written.manifest["files"])},
            "Art. 15", decided_by=authority.id, product_id=product_id,
        )  # fmt: skip
    return {"name": name, "state": ExportState.APPROVED.value, "product": product_id}


def reject_export(platform: Platform, authority: Principal, name: str, reason: str) -> None:
    if not reason.strip():
        raise InputError("a rejection needs a reason (Art. 15)", article="Art. 15")
    with platform.store.transaction() as conn:
        _decidable(conn, authority, name, "reject model exports")
        _move(platform, conn, name, ExportState.REJECTED, authority.actor, {"reason": reason},
              "Art. 15", reason=reason, decided_by=authority.id)  # fmt: skip


def _job(conn: Connection, operator: Principal, name: str, found: dict[str, Any]) -> int:
    """The export's job row: a released ``model_train`` job of the operator whose inputs
    are the model's datasets under the grants in force (lineage, disposal, scope)."""
    versions = json.loads(found["model"].versions_json)
    inputs = [
        {"dataset": t, "version": v, "grant": found["grants"][t].id} for t, v in versions.items()
    ]
    stamp = now_utc()
    return int(
        inserted_id(
            conn.execute(
                jobs.insert().values(
                    operator_id=operator.id,
                    kind=KIND,
                    request_json=json.dumps({"export": name}),
                    status=JobState.RELEASED.value,
                    inputs_json=json.dumps(inputs),
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        )
    )


def _write(
    platform: Platform, product_id: str, found: dict[str, Any], arrays: dict, authority: Principal
) -> Written:
    """The product's files in a work folder, the manifest of their hashes, its signature."""
    card, model = found["card"], found["model"]
    description = portable.describe(card, arrays)
    model_onnx = portable.to_onnx(description)  # before the work folder: a failure leaves none
    work = platform.work_dir()  # tmp/, which the platform clears of leftovers when it opens
    (work / "model.onnx").write_bytes(model_onnx)
    (work / "model.json").write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n")
    signed = {"card": card, "signature": model.signature}
    (work / "card.json").write_text(json.dumps(signed, indent=2, ensure_ascii=False) + "\n")
    manifest = {
        "product": product_id,
        "created_at": now_utc(),
        "platform": "jining-sandbox",
        "kind": "model",
        "model": model.name,
        "algorithm": card["algorithm"],
        "features": card["features"],
        "verdict": card["verdict"],
        "model_sha256": card["model_sha256"],
        "datasets": json.loads(model.versions_json),
        "agreement": found["agreement"].id,
        "approved_by": authority.name,
        "formats": {
            "model.onnx": f"ONNX, opset {portable.OPSET}, ai.onnx.ml {portable.ML_OPSET}",
            "model.json": portable.FORMAT,
        },  # fmt: skip
        "files": {
            name: {"sha256": sha256_file(work / name), "bytes": (work / name).stat().st_size}
            for name in FILES
        },
    }
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode()
    (work / MANIFEST).write_bytes(body)
    (work / SIGNATURE).write_text(keys.sign(platform.key, body) + "\n")
    return Written(product_id, work, manifest, body, inputs=(pa.table({}), {}, manifest))


def list_exports(platform: Platform, viewer: Principal) -> list[dict[str, Any]]:
    """Operators their own exports; the city authority and auditors all; a county
    authority those under its county's agreements."""
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise InputError("model exports are listed for operators, authorities and auditors")
    with platform.store.read() as conn:
        rows = conn.execute(select(model_exports).order_by(model_exports.c.name)).all()
        scope = scope_of(conn, viewer)
        mine = scope.agreements if scope is not None else None
    out = []
    for row in rows:
        if viewer.role is Role.OPERATOR and row.operator_id != viewer.id:
            continue
        if mine is not None and row.agreement_id not in mine:
            continue
        out.append(
            {"name": row.name, "state": row.status, "agreement": row.agreement_id,
             "product": row.product_id, "reason": row.reason, "updated_at": row.updated_at}
        )  # fmt: skip
    return out


def dispose_exports(platform: Platform, conn: Connection, actor: Actor, name: str) -> None:
    """The agreement ended with a delete clause (:func:`sandbox.models.services.dispose_ended`):
    the kept numbers go, an approved export's product was removed by the agreement's own
    disposal (:func:`sandbox.registry.disposal.dispose_in`), the export is disposed."""
    conn.execute(model_files.delete().where(model_files.c.name == name))
    row = conn.execute(select(model_exports).where(model_exports.c.name == name)).first()
    if row is not None and row.status != ExportState.DISPOSED.value:
        _move(platform, conn, name, ExportState.DISPOSED, actor,
              {"product": row.product_id, "agreement": row.agreement_id}, "Art. 13")  # fmt: skip
