"""Models (数据模型): train inside, judge the model, keep it inside; show and list them.

:func:`train` is the path of one model, run by its training job
(:mod:`sandbox.models.training`, kind ``model_train``) in the process that claimed it:

1. admission by the job kind (:class:`jobs.model.ModelTrain`) in the operator's scope
   and the grants gate (:func:`sandbox.run.admission.prepare`, as for every job kind),
   then the leaf size against the disclosure threshold in force;
2. training in an isolated worker (:mod:`sandbox.models.worker`, the SQL worker's
   isolation with the training task) under the ``[model]`` limits;
3. the structural checks again on this side of the boundary, over the arrays the
   worker returned (:func:`jobs.model_checks.check_structure`), and the attack figures
   judged against ``model.attack_max_auc``;
4. the signed model card (:mod:`sandbox.models.card`), one ledger entry
   ``model.trained`` or ``model.refused`` holding its hash, the ``models`` row; for a
   passed model the scores, by keyed hash of the entity, under ``models/`` in the home,
   and its numbers (``model_files``, hashing to the card's ``model_sha256``).

Nothing of the model leaves here: the operator reads the card. A passed model's file
leaves only as an export an authority approved (:mod:`sandbox.models.export`). A refused
model's card says which checks failed and neither its scores nor its numbers are kept.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs import get_kind
from jobs.model import KIND, ModelPlan, ModelRequest, require_leaf_size
from jobs.model_checks import (
    AttackFigures,
    StructuralLimits,
    check_structure,
    judge_attacks,
    verdict_of,
)
from policies.errors import Conflict, InputError, JobFailed, NotFound, PolicyRefusal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.models.card import build_card, sign_card
from sandbox.models.fit import arrays_from_json
from sandbox.models.tables import model_files, models
from sandbox.registry.jurisdiction import CITY, agreement_place
from sandbox.run.admission import Prepared, prepare
from sandbox.run.runner import Limits, Runner
from sandbox.verification.keys import load_secret, subject_hashes

WORKER = "sandbox.models.worker"
RESERVED = {"exports"}  # GET /v1/models/exports lists the exports of model files
MODELS_DIR = "models"

FAILURES = {
    "entities": "the features query yields more than {subject} entities (setting "
    "model.max_entities)",
    "feature_type": "feature '{subject}' is not a number; compute it as a number in the "
    "features query",
    "label_values": "the label '{subject}' must be 0 or 1 for every entity, never NULL: "
    "at least the disclosure threshold of entities have another label (fewer are left out "
    "of training and scoring); correct the label's expression or filter them out in WHERE",
    "too_few_entities": "each value of the label needs enough entities for the held-out "
    "split to hold at least twice the threshold ({subject}) of it",
}


def _limits(platform: Platform) -> Limits:
    s = platform.settings
    return Limits(
        time_s=s.model.time_limit_s,
        memory_mb=s.job.memory_limit_mb,
        max_rows=s.model.max_entities,
        threads=s.job.threads,
    )


def admit(
    platform: Platform,
    operator: Principal,
    request: Mapping[str, Any],
    pinned: Mapping[str, int] | None = None,
) -> Prepared:
    """Admission, the grants gate and the leaf size (raises PolicyRefusal); ``pinned``:
    the dataset versions a queued training was admitted against."""
    kind = get_kind(KIND)
    kind.referenced_datasets(request)  # a malformed request is refused before anything else
    with platform.store.read() as conn:
        prepared = prepare(conn, platform, operator, kind, request, pinned)  # type: ignore[arg-type]
    plan = cast(ModelPlan, prepared.plan)
    require_leaf_size(plan.request, prepared.params.min_entities)
    return prepared


def parsed_request(operator: Principal, request: Mapping[str, Any]) -> ModelRequest:
    """The request as data, from an operator, under a name that is not reserved."""
    require_role(operator, Role.OPERATOR, action="train models", article="Art. 14")
    parsed = ModelRequest.from_dict(request)
    if parsed.name in RESERVED:
        raise InputError(f"'{parsed.name}' is a reserved name; choose another")
    return parsed


def admit_recorded(
    platform: Platform,
    operator: Principal,
    request: Mapping[str, Any],
    pinned: Mapping[str, int] | None = None,
) -> Prepared:
    """:func:`admit`, a refusal recorded as ``model.refused`` (stage admission) and raised."""
    name = str(request.get("name", ""))[:64]
    try:
        return admit(platform, operator, request, pinned)
    except PolicyRefusal as refusal:
        with platform.store.transaction() as conn:
            platform.record(
                conn, operator.actor, "model.refused", f"model:{name}",
                {"stage": "admission", **refusal.to_dict()}, refusal.article or "Art. 15",
            )  # fmt: skip
        raise


Finish = Callable[[Connection, dict[str, Any]], None]


def train(
    platform: Platform,
    operator: Principal,
    request: Mapping[str, Any],
    *,
    pinned: Mapping[str, int] | None = None,
    finish: Finish | None = None,
) -> dict[str, Any]:
    """Train, judge, sign and record one model; returns its card (see the module).

    The training job (:mod:`sandbox.models.training`) passes the versions it was
    queued against and ``finish``, called in the transaction that records the card with
    the model's name, verdict and card hash (the job's end is written with the card)."""
    parsed = parsed_request(operator, request)
    prepared = admit_recorded(platform, operator, request, pinned)
    plan = cast(ModelPlan, prepared.plan)
    require_free_name(platform, operator, parsed.name)
    k = prepared.params.min_entities
    result, meta = _trained(platform, operator, parsed.name, prepared, k)
    settings = platform.settings.model
    try:
        arrays = arrays_from_json(meta["arrays"])
        figures = AttackFigures(**meta["attacks"])
        rare = int(meta["rare_parameters"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JobFailed("the training worker gave no readable model", code="worker_died") from exc
    structure = check_structure(arrays, StructuralLimits(k, settings.max_depth), rare)
    attacks = judge_attacks(figures, settings.attack_max_auc)
    verdict = verdict_of([*structure, *attacks])
    versions = {t: v.version for t, v in prepared.versions.items() if t in plan.tables}
    card = build_card(
        plan, operator.name, versions, meta, structure, attacks, verdict, result.layers
    )
    signature, digest = sign_card(platform, card)
    scores_path = (
        _keep_scores(platform, parsed.name, result.table) if verdict.value == "passed" else None
    )
    first = prepared.used.get(plan.tables[0]) if plan.tables else None
    with platform.store.transaction() as conn:
        conn.execute(models.delete().where(models.c.name == parsed.name))
        _keep_numbers(conn, parsed.name, meta if verdict.value == "passed" else None, card)
        conn.execute(
            models.insert().values(
                name=parsed.name,
                operator_id=operator.id,
                agreement_id=getattr(first, "agreement_id", None),
                request_json=json.dumps(parsed.to_dict()),
                status=verdict.value,
                card_json=json.dumps(card),
                signature=signature,
                versions_json=json.dumps(versions),
                scores_path=scores_path,
                created_at=card["created_at"],
            )
        )
        failed = [f.rule for f in (*structure, *attacks) if not f.passed]
        platform.record(
            conn,
            operator.actor,
            "model.trained" if not failed else "model.refused",
            f"model:{parsed.name}",
            {"card_sha256": digest, "verdict": verdict.value, "failed": failed,
             "datasets": versions, "algorithm": parsed.algorithm},
            "Art. 15",
        )  # fmt: skip
        if finish is not None:
            finish(conn, {"model": parsed.name, "verdict": verdict.value, "card_sha256": digest})
    timings = {**meta.get("timings", {}), "total_s": round(result.total_s, 3)}
    return {"card": card, "signature": signature, "card_sha256": digest, "timings": timings}


def _trained(platform: Platform, operator: Principal, name: str, prepared: Prepared, k: int):
    """The worker's result and the model it describes; a failure it reports is raised
    with its message, after the ledger entry ``model.failed``."""
    try:
        result = _run(platform, prepared, cast(ModelPlan, prepared.plan), k)
        meta = json.loads((result.table.schema.metadata or {}).get(b"model", b"{}"))
        failure = meta.get("failure")
        if failure in FAILURES:
            message = FAILURES[failure].format(subject=str(meta.get("subject", ""))[:64])
            raise JobFailed(message, code=failure, article="Art. 15")
    except JobFailed as stopped:
        with platform.store.transaction() as conn:
            platform.record(
                conn, operator.actor, "model.failed", f"model:{name}",
                {"code": stopped.code, "message": stopped.message}, "Art. 8",
            )  # fmt: skip
        raise
    return result, meta


def _keep_numbers(conn, name: str, meta: Mapping[str, Any] | None, card: Mapping) -> None:
    """A passed model's numbers (``meta`` None: a refused one keeps none), for an export
    (:mod:`sandbox.models.export`)."""
    conn.execute(model_files.delete().where(model_files.c.name == name))
    if meta is not None:
        conn.execute(
            model_files.insert().values(
                name=name, arrays_json=json.dumps(meta["arrays"]), created_at=card["created_at"]
            )
        )


def require_free_name(platform: Platform, operator: Principal, name: str) -> None:
    """A model's name is its own; a refused model of the same operator may be retrained."""
    with platform.store.read() as conn:
        row = conn.execute(select(models).where(models.c.name == name)).first()
    if row is None:
        return
    if row.operator_id != operator.id or row.status != "refused":
        raise Conflict(f"a model named '{name}' exists; choose another name")


def _run(platform: Platform, prepared: Prepared, plan: ModelPlan, k: int):
    settings = platform.settings.model
    extra = {
        **plan.task(),
        "min_entities": k,
        "attack_sample": settings.attack_sample,
        "shadow_models": settings.shadow_models,
    }
    snapshots = {t: prepared.versions[t].path for t in plan.tables}
    if platform.settings.engine == "spark":  # Spark MLlib on the platform's session
        from sandbox.models.spark_fit import ALGORITHMS, train_on_spark

        if plan.request.algorithm in ALGORITHMS:
            return train_on_spark(platform, plan.features.engine_sql, snapshots, extra)
    runner = Runner(_limits(platform), spare=False, worker_module=WORKER)
    try:
        return runner.run(plan.features.engine_sql, snapshots, extra)
    finally:
        runner.close()


def _keep_scores(platform: Platform, name: str, table: pa.Table) -> str:
    """Each entity's score by the keyed hash of its key (the verification secret, so a
    subject is the same subject in every service); no key is written."""
    secret = load_secret(platform.home / "keys")
    hashes = subject_hashes(secret, table.column("entity").to_pylist())
    scores = np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=float)
    folder = platform.home / MODELS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    relative = f"{MODELS_DIR}/{name}-{secrets.token_hex(4)}.parquet"
    pq.write_table(pa.table({"subject_hash": hashes, "score": scores}), platform.home / relative)
    return relative


def scores_of(platform: Platform, relative: str) -> pa.Table:
    return pq.read_table(Path(platform.home) / relative)


# --------------------------------------------------------------------------- reading


def model_row(conn, name: str):
    row = conn.execute(select(models).where(models.c.name == name)).first()
    if row is None:
        raise NotFound(f"no model '{name}'")
    return row


def show(platform: Platform, viewer: Principal, name: str) -> dict[str, Any]:
    """A model's card and signature: its operator, an authority or an auditor."""
    with platform.store.read() as conn:
        row = model_row(conn, name)
        operator = by_id(conn, row.operator_id)
        place = agreement_place(conn, row.agreement_id)
    _may_read(viewer, row.operator_id, name, place)
    return {
        "name": row.name,
        "operator": operator.name,
        "state": row.status,  # as every offering and job names it (issue 26)
        "card": json.loads(row.card_json),
        "signature": row.signature,
    }


def list_models(platform: Platform, viewer: Principal) -> list[dict[str, Any]]:
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise InputError("models are listed for operators, authorities and auditors")
    with platform.store.read() as conn:
        rows = conn.execute(select(models).order_by(models.c.name)).all()
        places = {r.name: agreement_place(conn, r.agreement_id) for r in rows}
    out = []
    for row in rows:
        if viewer.role is Role.OPERATOR and row.operator_id != viewer.id:
            continue
        if not _covers(viewer, places[row.name]):  # a county authority: its county's (Art. 5)
            continue
        card = json.loads(row.card_json)
        out.append(
            {
                "name": row.name,
                "state": row.status,
                "algorithm": card["algorithm"],
                "auc": card["evaluation"].get("auc"),
                "created_at": row.created_at,
            }
        )
    return out


def _covers(viewer: Principal, place: str) -> bool:
    """Whether ``viewer`` reads what was made under an agreement of ``place``: everyone but
    a county authority, which reads its county's only (Art. 5)."""
    if viewer.role is not Role.AUTHORITY or viewer.jurisdiction == CITY:
        return True
    return viewer.jurisdiction == place


def _may_read(viewer: Principal, operator_id: int, name: str, place: str) -> None:
    if viewer.role is Role.AUTHORITY and _covers(viewer, place):
        return
    if viewer.role is Role.AUDITOR:
        return
    if viewer.role is Role.OPERATOR and viewer.id == operator_id:
        return
    raise NotFound(f"no model '{name}'")
