"""What an evaluation reads (Art. 23): the materials the operator submits, and the score,
notes and materials of each evaluation afterwards.

Before or for an evaluation, the operator of an agreement submits materials: a file (a
self-assessment, a security report, a drill's minutes ...) with a title
(:func:`submit`). The file is kept under the platform's home at ``materials/<sha256>``
(named by its content: the same bytes are kept once; a backup takes the folder with the
rest of the home) with its SHA-256, its size and the name it was sent under, and
recorded with one ledger entry (``material.submitted``, Art. 23). A material is a
document of :data:`SUFFIXES`, neither empty nor over :data:`MAX_BYTES`; an agreement
that ended takes none. The operator itself, the authorities covering the agreement
(Art. 5) and auditors list and download them (:func:`materials_of`, :func:`material_file`,
checked against the recorded SHA-256 on the way out); anyone else is refused, and an
operator asking for another's is told there is none. Reading writes nothing.

:func:`sandbox.workflow.supervision.evaluate` names the materials it considered and an
optional score, kept in ``evaluation_basis`` in the evaluation's own transaction
(:func:`basis_in`); :func:`evaluation_dict` shows an evaluation to the same readers.
Known gap: a file placed in ``materials/`` by a process killed before its commit stays
there unrecorded (it holds nothing another submission of the same bytes would not).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import (
    InputError,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    SandboxError,
)
from policies.workflow import AgreementState, refuse
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.storage import disk_full, is_disk_full, sha256_file
from sandbox.core.store import inserted_id
from sandbox.registry.base import get, need_text, require_authority
from sandbox.registry.tables import agreements, evaluation_basis, evaluation_materials, evaluations

ARTICLE = "Art. 23"
FOLDER = "materials"
MAX_BYTES = 20 * 1024 * 1024
MAX_TITLE = 200
SUFFIXES = (".pdf", ".docx", ".doc", ".odt", ".xlsx", ".xls", ".ods", ".csv", ".txt", ".md",
            ".png", ".jpg", ".jpeg", ".zip")  # fmt: skip
ENDED = {AgreementState.EXPIRED.value, AgreementState.TERMINATED.value}


# --- the file's checks, shared by the host and the server's route -----------------------------


def file_name(filename: str | None) -> str:
    """The name the file was sent under (base name, printable, at most 100 characters),
    if it names a document kind the platform keeps."""
    name = "".join(c for c in Path(filename or "").name if c.isprintable()).strip()[:100]
    if Path(name).suffix.lower() not in SUFFIXES:
        raise InputError(f"--file '{name}': a material is a document whose name ends in one "
                         f"of {', '.join(SUFFIXES)} ({ARTICLE})", article=ARTICLE)  # fmt: skip
    return name


def check_size(size: int, name: str) -> None:
    """Refused before a byte is kept: an empty file, or one over :data:`MAX_BYTES`."""
    if size <= 0:
        raise InputError(f"--file '{name}' is empty ({ARTICLE})", article=ARTICLE)
    if size > MAX_BYTES:
        raise PayloadTooLarge(f"--file '{name}' is over the limit of {MAX_BYTES // (1 << 20)} "
                              f"MiB for a material ({ARTICLE})", article=ARTICLE)  # fmt: skip


# --- who reads --------------------------------------------------------------------------------


def _readable(conn: Connection, viewer: Principal, agreement_id: int, what: str) -> Row:
    """The agreement, if the viewer reads its evaluation materials: its operator, an
    authority covering it, an auditor. Another operator is told there is no ``what``."""
    require_role(viewer, Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR,
                 action="read evaluation materials and evaluations", article=ARTICLE)  # fmt: skip
    row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if row is None or (viewer.role is Role.OPERATOR and row.operator_id != viewer.id):
        raise NotFound(f"no {what} that you may read")
    if viewer.role is Role.AUTHORITY:
        require_authority(viewer, row.jurisdiction, "read evaluation materials", ARTICLE)
    return row


# --- submitting ------------------------------------------------------------------------------


def local_file(path: Path | str) -> Path:
    """A file of this machine fit to submit, checked before a byte of it is read or sent
    (the command line's check, on the host and before an upload alike)."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"--file '{source}': no such file")
    check_size(source.stat().st_size, file_name(source.name))
    return source


def submit_file(platform: Platform, operator: Principal, agreement_id: int, *, title: str,
                path: Path | str) -> dict:  # fmt: skip
    """:func:`submit` a file of this machine (:func:`local_file`)."""
    source = local_file(path)
    return submit(platform, operator, agreement_id, title=title, filename=source.name,
                  content=source.read_bytes())  # fmt: skip


def submit(platform: Platform, operator: Principal, agreement_id: int, *, title: str,
           filename: str, content: bytes) -> dict:  # fmt: skip
    """Keep a material the operator submits for the evaluation of its agreement; answers
    it as :func:`materials_of` lists it."""
    require_role(operator, Role.OPERATOR, action="submit evaluation materials", article=ARTICLE)
    need_text({"title": title}, ARTICLE)
    if len(title) > MAX_TITLE:
        raise InputError(f"--title is over {MAX_TITLE} characters ({ARTICLE})", article=ARTICLE)
    name = file_name(filename)
    check_size(len(content), name)
    digest = hashlib.sha256(content).hexdigest()
    placed: list[Path] = []
    try:
        with platform.store.transaction() as conn:
            row = get(conn, agreements, agreement_id, "agreement")
            if row.operator_id != operator.id:
                raise NotFound(f"no agreement {agreement_id} of yours")
            if row.status in ENDED:
                raise refuse("agreement_ended", f"agreement {agreement_id} is {row.status}; "
                             "it is evaluated no more", ARTICLE, f"agreement:{agreement_id}")  # fmt: skip
            relative = _place(platform.home, digest, content, placed)
            mid = inserted_id(conn.execute(evaluation_materials.insert().values(
                agreement_id=agreement_id, operator_id=operator.id, title=title, filename=name,
                sha256=digest, bytes=len(content), path=relative, created_at=now_utc())))  # fmt: skip
            platform.record(conn, operator.actor, "material.submitted", f"material:{mid}",
                            {"agreement": agreement_id, "title": title, "filename": name,
                             "sha256": digest, "bytes": len(content)}, ARTICLE)  # fmt: skip
            return _material(conn, _row(conn, mid))
    except BaseException as exc:
        for path in placed:  # nothing recorded it: nothing of it is kept
            path.unlink(missing_ok=True)
        if not isinstance(exc, SandboxError) and is_disk_full(exc):
            raise disk_full("the material") from exc
        raise


def _place(home: Path, digest: str, content: bytes, placed: list[Path]) -> str:
    """Write the file under its SHA-256 (written aside, renamed into place), unless the
    same bytes are kept already; a file placed now is added to ``placed``."""
    relative = f"{FOLDER}/{digest}"
    target = home / relative
    if target.is_file() and sha256_file(target) == digest:
        return relative
    target.parent.mkdir(mode=0o700, exist_ok=True)
    aside = target.with_name(f".{digest}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        aside.write_bytes(content)
        os.replace(aside, target)
    finally:
        aside.unlink(missing_ok=True)
    placed.append(target)
    return relative


# --- reading -----------------------------------------------------------------------------------


def _row(conn: Connection, material_id: int) -> Row:
    return get(conn, evaluation_materials, material_id, "material")


def _considered_by(conn: Connection, agreement_id: int) -> dict[int, list[int]]:
    """Material id -> the evaluations of the agreement that considered it."""
    rows = conn.execute(
        select(evaluation_basis.c.evaluation_id, evaluation_basis.c.materials_json)
        .join(evaluations, evaluations.c.id == evaluation_basis.c.evaluation_id)
        .where(evaluations.c.agreement_id == agreement_id)
        .order_by(evaluation_basis.c.evaluation_id)
    ).all()
    out: dict[int, list[int]] = {}
    for r in rows:
        for mid in json.loads(r.materials_json):
            out.setdefault(mid, []).append(r.evaluation_id)
    return out


def _material(conn: Connection, r: Row, considered: dict[int, list[int]] | None = None) -> dict:
    by = considered if considered is not None else _considered_by(conn, r.agreement_id)
    return {"id": r.id, "agreement": r.agreement_id, "operator": by_id(conn, r.operator_id).name,
            "title": r.title, "filename": r.filename, "sha256": r.sha256, "bytes": r.bytes,
            "submitted_at": r.created_at, "considered_by": by.get(r.id, [])}  # fmt: skip


def materials_of(platform: Platform, viewer: Principal, agreement_id: int) -> list[dict]:
    """The materials submitted for an agreement's evaluations, oldest first."""
    with platform.store.read() as conn:
        _readable(conn, viewer, agreement_id, f"agreement {agreement_id}")
        rows = conn.execute(
            select(evaluation_materials)
            .where(evaluation_materials.c.agreement_id == agreement_id)
            .order_by(evaluation_materials.c.id)
        ).all()
        considered = _considered_by(conn, agreement_id)
        return [_material(conn, r, considered) for r in rows]


def material_file(platform: Platform, viewer: Principal, material_id: int) -> tuple[dict, Path]:
    """A material and its file, checked against the SHA-256 recorded at submission."""
    with platform.store.read() as conn:
        row = conn.execute(
            select(evaluation_materials).where(evaluation_materials.c.id == material_id)
        ).first()
        if row is None:
            raise NotFound(f"no material {material_id} that you may read")
        _readable(conn, viewer, row.agreement_id, f"material {material_id}")
        info = _material(conn, row)
    path = platform.home / row.path
    if not path.is_file() or sha256_file(path) != row.sha256:
        raise IntegrityError(f"material {material_id}: its file does not match the SHA-256 "
                             "recorded when it was submitted (Art. 7)", article="Art. 7")  # fmt: skip
    return info, path


# --- what an evaluation considered --------------------------------------------------------------


def check_score(score: int | None) -> int | None:
    if score is not None and (isinstance(score, bool) or not 0 <= score <= 100):
        raise InputError(f"--score {score}: a whole number from 0 to 100 ({ARTICLE})",
                         article=ARTICLE)  # fmt: skip
    return score


def basis_in(conn: Connection, agreement_id: int, evaluation_id: int,
             materials: Sequence[int], score: int | None) -> list[int]:  # fmt: skip
    """Record, in the evaluation's transaction, its score and the materials it considered:
    each one submitted for this agreement (refused otherwise, and the evaluation with it)."""
    wanted = sorted(set(materials))
    known = set(conn.execute(select(evaluation_materials.c.id).where(
        evaluation_materials.c.agreement_id == agreement_id,
        evaluation_materials.c.id.in_(wanted))).scalars())  # fmt: skip
    if unknown := [m for m in wanted if m not in known]:
        raise refuse("material_not_submitted", f"--material {unknown[0]}: no material of that "
                     f"id was submitted for agreement {agreement_id}", ARTICLE,
                     f"agreement:{agreement_id}", "name materials from 'sandbox evaluation "
                     f"materials {agreement_id}'")  # fmt: skip
    conn.execute(evaluation_basis.insert().values(
        evaluation_id=evaluation_id, score=score, materials_json=json.dumps(wanted)))  # fmt: skip
    return wanted


def evaluation_dict(platform: Platform, viewer: Principal, evaluation_id: int) -> dict:
    """An evaluation: its result, notes, figures, deadline, score and the materials it
    considered (its operator, the authorities covering it, auditors)."""
    with platform.store.read() as conn:
        ev = conn.execute(select(evaluations).where(evaluations.c.id == evaluation_id)).first()
        if ev is None:
            raise NotFound(f"no evaluation {evaluation_id} that you may read")
        row = _readable(conn, viewer, ev.agreement_id, f"evaluation {evaluation_id}")
        basis = conn.execute(select(evaluation_basis).where(
            evaluation_basis.c.evaluation_id == evaluation_id)).first()  # fmt: skip
        ids = json.loads(basis.materials_json) if basis is not None else []
        considered = _considered_by(conn, ev.agreement_id)
        return {"id": ev.id, "agreement": ev.agreement_id,
                "operator": by_id(conn, row.operator_id).name,
                "authority": by_id(conn, ev.authority_id).name, "status": ev.status,
                "notes": ev.notes, "score": basis.score if basis is not None else None,
                "deadline": ev.deadline, "figures": json.loads(ev.figures_json),
                "materials": [_material(conn, _row(conn, m), considered) for m in ids],
                "created_at": ev.created_at}  # fmt: skip
