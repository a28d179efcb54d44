"""Round 2 of a PSI count session (:mod:`sandbox.psi.counts` opens it): the operator's
server response to the platform's request, in parts (each element counted once), the
noisy count or per-group counts released with the DP charge in one transaction, and the
transport the CLI uses on the platform's host (docs/psi.md, "Counts about persons: the
roles swapped")."""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from typing import Any

import private_set_intersection.python as psi_lib
from google.protobuf.message import DecodeError
from private_set_intersection.python import _openmined_psi as psi_core
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.psi_match import KIND as GATE_KIND
from policies.dp import CONFIDENCE, MECHANISM, half_width, laplace
from policies.errors import (
    Conflict,
    InputError,
    NotFound,
    PolicyRefusal,
)
from policies.psi import COUNT_MODE
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.data.grants import may_run
from sandbox.data.vault import get_version
from sandbox.guard import dp_budget
from sandbox.psi.counts import (
    ARTICLE,
    KIND,
    NO_BUDGET,
    fail_session,
    forget_session,
    open_count,
    session_folder,
    session_key_path,
)
from sandbox.psi.tables import psi_sessions
from sandbox.run.jobstate import JobState, transition


def count_session(conn: Connection, operator: Principal, session_id: int):
    """The operator's own open count session (else ``not_found``, or ``conflict``)."""
    row = conn.execute(select(psi_sessions).where(psi_sessions.c.id == session_id)).first()
    if row is None or row.operator_id != operator.id or row.mode != COUNT_MODE:
        raise NotFound(f"no PSI count session {session_id} of yours")
    if row.status != "open":
        raise Conflict(f"PSI count session {session_id} is {row.status}")
    return row


def check_session(platform: Platform, operator: Principal, session_id: int) -> None:
    """Asked before the body of round 2 is read."""
    with platform.store.read() as conn:
        count_session(conn, operator, session_id)


def parts_of(meta: dict[str, Any]) -> list[tuple[int, int]]:
    """The slices ``[start, stop)`` of the platform's request answered one part each (a
    part is at most ``part_items`` elements, so each body stays under ``api.max_body_mb``)."""
    size, step = meta["request_size"], meta["part_items"]
    return [(at, min(at + step, size)) for at in range(0, size, step)] or [(0, 0)]


def _digests(elements) -> set[bytes]:
    return {hashlib.blake2b(e, digest_size=12).digest() for e in elements}


def _part_counts(
    platform: Platform, session_id: int, meta: dict[str, Any], body: bytes, part: int, seen: set
) -> tuple[list[int], set[bytes]]:
    """The intersection's size, or its size per declared group (in the declared order), in
    one part of the answer; and the digests of the part's elements."""
    start, stop = parts_of(meta)[part]
    response = psi_lib.Response()
    try:
        response.ParseFromString(body)
    except DecodeError:
        raise InputError("the answer is not a serialised Response of the PSI library") from None
    elements = response.encrypted_elements
    digests = _digests(elements)
    # One element per element of the request, all distinct (as the platform's items are),
    # within the part and across parts: an answer that repeats or adds elements could count
    # one person more than once.
    if len(elements) != stop - start or len(digests) != len(elements) or digests & seen:
        raise InputError(
            f"part {part} of the answer must hold {stop - start} distinct elements, one per "
            f"element of the platform's request from {start}, none repeated from another "
            f"part; it holds {len(elements)}"
        )
    key = session_key_path(platform, session_id).read_bytes()
    client = psi_lib.client.CreateFromKey(key, meta["reveal"])
    setup = psi_core.cpp_proto_server_setup.Load(
        (session_folder(platform, session_id) / "setup.bin").read_bytes()
    )
    loaded = psi_core.cpp_proto_response.Load(body)
    try:
        if not meta["reveal"]:
            return [int(client.data.GetIntersectionSize(setup, loaded))], digests
        counts = [0] * len(meta["groups"])
        positions = meta["positions"]
        for i in client.data.GetIntersection(setup, loaded):
            if positions[start + i] >= 0:
                counts[positions[start + i]] += 1
        return counts, digests
    except RuntimeError as exc:
        raise InputError(f"the answer was refused by the PSI library: {exc}") from exc


def _tally(
    platform: Platform, session_id: int, meta: dict[str, Any], body: bytes, part: int
) -> tuple[list[int], int]:
    """Count one part and add it to the session's tally (a file of the session, deleted
    with it); returns (the tally, parts answered). One part at a time per session."""
    parts = parts_of(meta)
    if not 0 <= part < len(parts):
        raise InputError(f"part must be 0 to {len(parts) - 1}, not {part}")
    folder = session_folder(platform, session_id)
    with open(folder / "tally.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path, seen_path = folder / "tally.json", folder / "seen.bin"
        width = 1 if not meta["reveal"] else len(meta["groups"])
        state = (
            json.loads(path.read_text(encoding="utf-8"))
            if path.exists()
            else {"done": [], "counts": [0] * width}
        )
        if part in state["done"]:
            raise Conflict(f"part {part} of PSI count session {session_id} is answered already")
        raw = seen_path.read_bytes() if seen_path.exists() else b""
        seen = {raw[i : i + 12] for i in range(0, len(raw), 12)}
        counts, digests = _part_counts(platform, session_id, meta, body, part, seen)
        state["done"].append(part)
        state["counts"] = [a + b for a, b in zip(state["counts"], counts, strict=True)]
        with open(seen_path, "ab") as fh:
            fh.write(b"".join(sorted(digests)))
        path.write_text(json.dumps(state), encoding="utf-8")
    return state["counts"], len(state["done"])


def answer_count(
    platform: Platform, operator: Principal, session_id: int, body: bytes, part: int = 0
) -> dict:
    """Round 2, one part of the answer at a time (:func:`parts_of`): the operator's server
    response to that slice of the request in; once every part is in, the noisy count(s)
    out, else how many parts are in."""
    t0 = time.perf_counter()
    with platform.store.read() as conn:
        row = count_session(conn, operator, session_id)
    folder = session_folder(platform, session_id)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    job_id = int(meta["job"])
    mode = _mode_again(platform, operator, row, session_id, job_id)
    # an InputError leaves the session open and the part unanswered
    true, answered = _tally(platform, session_id, meta, body, part)
    parts = len(parts_of(meta))
    _record_part(platform, operator, session_id, job_id, meta, part, answered)
    if answered < parts:
        return {"session": session_id, "job": job_id, "parts": parts, "answered": answered}
    measurement, scale = laplace(1, mode.per_query)
    noisy = [max(0, int(v)) for v in measurement(true)]
    del true
    groups = dict(zip(meta["groups"], noisy, strict=True)) if meta["reveal"] else None
    count = noisy[0] if groups is None else sum(noisy)
    noise = {
        "mechanism": MECHANISM,
        "epsilon": mode.per_query,
        "sensitivity": 1,
        "scale": scale,
        "half_width_95": half_width(scale),
        "confidence": CONFIDENCE,
    }
    try:
        answer = _release(platform, operator, row, meta, mode, count, groups, noise)
    except PolicyRefusal as exc:  # the budget went meanwhile: nothing released or spent
        fail_session(platform, operator, session_id, job_id, exc)
        raise
    forget_session(platform, session_id)
    answer["timings"] = {"answer_s": round(time.perf_counter() - t0, 4)}
    return answer


def _mode_again(platform: Platform, operator: Principal, row: Any, session_id: int, job_id: int):
    """The gate and the DP mode asked again: a suspension takes effect between rounds (the
    session fails, nothing is spent)."""
    try:
        with platform.store.read() as conn:
            used = may_run(conn, operator, [row.dataset], GATE_KIND)
            version = get_version(conn, platform, row.dataset, row.version)
            mode = dp_budget.mode_for(conn, used, row.dataset, version.classification.entity_kind)
            if mode is None:
                raise PolicyRefusal(NO_BUDGET, "the agreement left the DP mode", article=ARTICLE)
    except PolicyRefusal as exc:
        fail_session(platform, operator, session_id, job_id, exc)
        raise
    return mode


def _record_part(
    platform: Platform,
    operator: Principal,
    session_id: int,
    job_id: int,
    meta: dict[str, Any],
    part: int,
    answered: int,
) -> None:
    """One answered part: its elements counted as received, and its ledger entry."""
    parts = parts_of(meta)
    start, stop = parts[part]
    with platform.store.transaction() as conn:
        conn.execute(
            psi_sessions.update()
            .where(psi_sessions.c.id == session_id)
            .values(received=psi_sessions.c.received + (stop - start), updated_at=now_utc())
        )
        details = {
            "job": job_id,
            "part": part,
            "elements": stop - start,
            "parts": len(parts),
            "answered": answered,
        }
        platform.record(
            conn, operator.actor, "psi.count.part", f"psi:{session_id}", details, ARTICLE
        )


def _release(
    platform: Platform,
    operator: Principal,
    row: Any,
    meta: dict[str, Any],
    mode: Any,
    count: int,
    groups: dict[str, int] | None,
    noise: dict[str, Any],
) -> dict:
    """The noisy answer out, in one transaction: the session still open (one answer per
    session), the epsilon charged, the session closed, ledgered, the job released."""
    session_id, job_id = row.id, int(meta["job"])
    with platform.store.transaction() as conn:
        count_session(conn, operator, session_id)
        after = dp_budget.reserve(platform, conn, operator.actor, mode, job_id)
        conn.execute(
            psi_sessions.update()
            .where(psi_sessions.c.id == session_id)
            .values(status="closed", updated_at=now_utc())
        )
        shown = {
            "dataset": row.dataset,
            "version": row.version,
            "column": row.column_name,
            "group_by": row.group_by,
            "list_size": row.list_size,
        }
        details = {
            "job": job_id,
            **shown,
            "column_size": meta["request_size"],
            "released": groups if groups is not None else count,
            **noise,
        }
        platform.record(conn, operator.actor, "psi.count", f"psi:{session_id}", details, ARTICLE)
        transition(platform, conn, job_id, operator, JobState.CHECKING, {"kind": KIND})
        transition(
            platform,
            conn,
            job_id,
            operator,
            JobState.RELEASED,
            {"kind": KIND, "epsilon": mode.per_query},
        )
    return {
        "session": session_id,
        "job": job_id,
        **shown,
        "count": count,
        "groups": groups,
        "noise": noise,
        "budget": {
            "agreement": mode.agreement_id,
            "population": mode.population,
            "remaining": after.share_remaining,
            "accounting": dp_budget.ACCOUNTING,
        },
    }


# --- the in-process transport ----------------------------------------------------------------


class LocalCountTransport:
    """The operator's half's view of the platform in-process (the CLI on the platform's host):
    the functions the HTTP routes call."""

    def __init__(self, platform: Platform, operator: Principal):
        self.platform = platform
        self.operator = operator

    def count_open(self, body: bytes) -> bytes:
        return open_count(self.platform, self.operator, body)

    def count_respond(self, session: int, body: bytes, part: int = 0) -> dict:
        return answer_count(self.platform, self.operator, session, body, part)
