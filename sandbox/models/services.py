"""Scoring services (数据服务): a passed model published for consumers, its lifecycle.

The states are verification products' (:class:`policies.verification.ProductState`),
each move one ledger entry ``score.<state>``::

    operator defines (a passed model of its own, made under an agreement)
    -> authority approves: the grade index is built, the service is published | rejected
    -> consumers call it (sandbox.models.calls); each call asks the grants gate again:
       a suspended, expired or terminated agreement withdraws the service (Art. 24)
    -> an agreement that ended with a delete clause disposes of the index and the scores
       (:func:`dispose_ended`)

The index holds one grade per scored subject by keyed hash, built from the model's
scores (kept inside at training) and the bands of the definition
(:class:`jobs.model_bands.ServiceDefinition`); no score and no feature is kept in it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.model import KIND
from jobs.model_bands import ARTICLE, NOT_FOUND, ServiceDefinition, require_band_sizes
from policies.errors import Conflict, InputError, NotFound, PolicyRefusal
from policies.verification import ProductState, may_move
from policies.workflow import AgreementState, Disposal
from sandbox.core.ledger import SYSTEM, Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.data.grants import may_run
from sandbox.models.export import dispose_exports
from sandbox.models.service import model_row, scores_of
from sandbox.models.tables import models, score_index, score_services
from sandbox.registry.jurisdiction import scope_of
from sandbox.registry.tables import agreements
from sandbox.verification.products import Lifecycle, require_product_authority, visible_to


def _tables(row) -> list[str]:
    return list(json.loads(row.versions_json))


SERVICES = Lifecycle(score_services, "scoring service", "score", "score")


def service_row(conn: Connection, name: str):
    return SERVICES.row(conn, name)


def _bands(
    platform: Platform, definition: ServiceDefinition, model
) -> tuple[Any, np.ndarray, list[int]]:
    """The model's scores (keyed hashes), each one's band and the bands' sizes; every band
    must hold the disclosure threshold of entities (rule ``band_size``)."""
    if model.status != "passed" or not model.scores_path:
        raise PolicyRefusal(
            "model_not_passed",
            f"model '{model.name}' did not pass its checks (or was disposed); only a passed "
            "model may be published",
            article="Art. 15",
            subject=model.name,
        )
    scores = scores_of(platform, model.scores_path)
    bands = definition.band_of(np.asarray(scores.column("score").to_numpy(), dtype=float))
    counts = require_band_sizes(definition, bands, _k(platform))
    return scores, bands, counts


def _k(platform: Platform) -> int:
    return platform.disclosure_minimums().min_entities


def _require_apart(
    conn: Connection, definition: ServiceDefinition, hashes: list[str], bands: np.ndarray, k: int
) -> None:
    """A consumer may call every service: this one's grades, read with the grades the
    other services' indexes give the same subjects, must not split a combination of those
    into a part of fewer than ``k`` subjects (rule ``band_size``). Two services of nearly
    the same bands (of one model, or of two alike) would otherwise single out the few
    subjects between their bounds, and with them a sliver of the score."""
    rows = conn.execute(
        select(score_index.c.service, score_index.c.subject_hash, score_index.c.grade).where(
            score_index.c.service != definition.name
        )
    ).all()
    if not rows:
        return
    others = sorted({r.service for r in rows})
    column = {name: i for i, name in enumerate(others)}
    theirs: dict[str, list[str]] = {}
    for row in rows:
        theirs.setdefault(row.subject_hash, [NOT_FOUND] * len(others))[column[row.service]] = (
            row.grade
        )
    mine = dict(zip(hashes, np.asarray(definition.grades, dtype=object)[bands], strict=True))
    before: Counter[tuple[str, ...]] = Counter()
    after: Counter[tuple[tuple[str, ...], str]] = Counter()
    for subject in theirs.keys() | mine.keys():
        combination = tuple(theirs.get(subject, [NOT_FOUND] * len(others)))
        before[combination] += 1
        after[combination, mine.get(subject, NOT_FOUND)] += 1
    for (combination, grade), count in after.items():
        if count < k and count < before[combination]:
            named = [
                f"'{g}' of {o}" for o, g in zip(others, combination, strict=True) if g != NOT_FOUND
            ]
            raise PolicyRefusal(
                "band_size",
                f"grade '{grade}' together with the grade {', '.join(named) or 'not_found'} "
                f"of the scoring services already published would hold fewer than {k} scored "
                "entities, the disclosure threshold; a consumer calling both would single "
                f"them out ({ARTICLE})",
                article=ARTICLE,
                subject=grade,
                hint="use the same band bounds as those services, or bounds far from theirs",
            )


def define(platform: Platform, operator: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """File a service over a passed model of the operator's; it waits for approval."""
    require_role(operator, Role.OPERATOR, action="define scoring services", article="Art. 13")
    definition = ServiceDefinition.from_dict(data)
    if definition.name in ("services", "who"):
        raise InputError(f"'{definition.name}' is a reserved name; choose another")
    with platform.store.transaction() as conn:
        model = model_row(conn, definition.model)
        if model.operator_id != operator.id:
            raise NotFound(f"no model '{definition.model}'")
        if model.agreement_id is None:
            raise PolicyRefusal(
                "agreement_required",
                "scoring services are published under an operation agreement; the model was "
                "trained under a direct grant",
                article="Art. 13",
                subject=definition.model,
                hint="train it under an agreement whose job kinds include model_train",
            )
        may_run(conn, operator, _tables(model), KIND)
        scores, bands, counts = _bands(platform, definition, model)
        _require_apart(
            conn, definition, scores.column("subject_hash").to_pylist(), bands, _k(platform)
        )
        if conn.execute(
            select(score_services.c.name).where(score_services.c.name == definition.name)
        ).first():
            raise Conflict(f"a scoring service named '{definition.name}' exists")
        stamp = now_utc()
        conn.execute(
            score_services.insert().values(
                name=definition.name,
                model=definition.model,
                operator_id=operator.id,
                agreement_id=model.agreement_id,
                definition_json=json.dumps(definition.to_dict()),
                status=ProductState.DEFINED.value,
                created_at=stamp,
                updated_at=stamp,
            )
        )
        platform.record(
            conn, operator.actor, "score.defined", f"score:{definition.name}",
            {"definition": definition.to_dict(), "agreement": model.agreement_id},
            "Art. 13",
        )  # fmt: skip
    return {"name": definition.name, "state": ProductState.DEFINED.value, "band_sizes": counts}


def approve(platform: Platform, authority: Principal, name: str) -> dict[str, Any]:
    """Publish a defined (or withdrawn) service: the gate again, the grade index built."""
    require_role(authority, Role.AUTHORITY, action="approve scoring services", article="Art. 13")
    with platform.store.transaction() as conn:
        row = service_row(conn, name)
        require_product_authority(conn, authority, row, "approve scoring services")
        if not may_move(ProductState(row.status), ProductState.PUBLISHED):
            raise Conflict(f"scoring service '{name}' is {row.status}; it cannot be approved")
        definition = ServiceDefinition.from_dict(json.loads(row.definition_json))
        model = model_row(conn, definition.model)
        may_run(conn, by_id(conn, row.operator_id), _tables(model), KIND)
        scores, bands, _ = _bands(platform, definition, model)
        hashes = scores.column("subject_hash").to_pylist()
        _require_apart(conn, definition, hashes, bands, _k(platform))
        conn.execute(score_index.delete().where(score_index.c.service == name))
        grades = np.asarray(definition.grades, dtype=object)[bands]
        conn.execute(
            score_index.insert(),
            [
                {"service": name, "subject_hash": h, "grade": g}
                for h, g in zip(hashes, grades, strict=True)
            ],
        )
        SERVICES.move(
            platform, conn, name, ProductState.PUBLISHED, authority.actor,
            {"model": definition.model, "index_rows": len(grades), "grades": list(definition.codes)},
            "Art. 13", approved_by=authority.id, index_rows=len(grades),
        )  # fmt: skip
    return {"name": name, "state": ProductState.PUBLISHED.value, "index_rows": len(grades)}


def reject(platform: Platform, authority: Principal, name: str, reason: str) -> None:
    SERVICES.reject(platform, authority, name, reason)


def list_services(platform: Platform, viewer: Principal) -> list[dict[str, Any]]:
    """Consumers see published services; operators their own; the city authority and
    auditors all; a county authority those made under its county's agreements (Art. 5)."""
    with platform.store.read() as conn:
        rows = conn.execute(select(score_services).order_by(score_services.c.name)).all()
        scope = scope_of(conn, viewer)
        mine = scope.agreements if scope is not None else None
    out = []
    for row in rows:
        if (mine is not None and row.agreement_id not in mine) or not visible_to(viewer, row):
            continue
        definition = json.loads(row.definition_json)
        out.append(
            {
                "name": row.name,
                "state": row.status,
                "model": row.model,
                "grades": [b["grade"] for b in definition["bands"]],
                "description": definition["description"],
            }
        )
    return out


def dispose_ended(platform: Platform, actor: Actor = SYSTEM) -> list[str]:
    """Carry out the disposal clause of ended agreements on their models and services:
    ``delete`` removes the grade index, the scores and the model's kept numbers, withdraws
    a published service, marks the model and its export disposed (``model.disposed``);
    idempotent."""
    ended = (AgreementState.EXPIRED.value, AgreementState.TERMINATED.value)
    done = []
    with platform.store.transaction() as conn:
        rows = conn.execute(
            select(models)
            .join(agreements, agreements.c.id == models.c.agreement_id)
            .where(agreements.c.status.in_(ended), agreements.c.disposal == Disposal.DELETE.value)
            .where(models.c.status != "disposed")
        ).all()
        for model in rows:
            for svc in conn.execute(
                select(score_services).where(score_services.c.model == model.name)
            ).all():
                if svc.status == ProductState.PUBLISHED.value:
                    SERVICES.move(platform, conn, svc.name, ProductState.WITHDRAWN, actor,
                                  {"reason": "the agreement ended"}, "Art. 13")  # fmt: skip
                conn.execute(score_index.delete().where(score_index.c.service == svc.name))
            if model.scores_path:
                (platform.home / model.scores_path).unlink(missing_ok=True)
            conn.execute(
                models.update()
                .where(models.c.name == model.name)
                .values(status="disposed", scores_path=None)
            )
            dispose_exports(platform, conn, actor, model.name)  # its numbers and its export
            platform.record(conn, actor, "model.disposed", f"model:{model.name}",
                            {"agreement": model.agreement_id}, "Art. 13")  # fmt: skip
            done.append(model.name)
    return done
