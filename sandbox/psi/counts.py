"""Count sessions: PSI with the roles swapped, for counts about persons (issue 18, item 2).

In a match session (:mod:`sandbox.psi.service`) the operator is the PSI *client* and,
with a crafted client, learns item by item which of its items are in the column
(docs/psi.md, "Limits"). Here the operator is the PSI *server* and the platform the
client, so the platform, not the operator, learns the intersection's size; it releases
that size (or one size per declared group of a ``public`` column) with OpenDP's discrete
Laplace noise, charged to the DP budget of the operator's agreement for the dataset's
population and year (:mod:`sandbox.guard.dp_budget`). Two rounds:

1. :func:`open_count`: the operator sends its setup message (its items encrypted under
   its own key, RAW form) with the dataset, column and group column. Admission, decided
   before anything is computed and spending nothing: the gate (job kind ``psi_match``),
   the column classes (a group column must be ``public`` and its code list declared),
   the PSI terms (the daily cap first, the group column offered, the list sizes), the
   agreement's DP mode for the dataset and the budget left for one session's epsilon.
   The platform then encrypts every distinct item of its column, in a random order,
   under a key made for this session and answers with that request.
2. :func:`answer_count`: the operator answers with its server's response to the
   request, in parts of at most ``psi.chunk_items`` elements (so each body stays under
   ``api.max_body_mb``; each part counted once, its elements distinct within it and from
   the other parts', the running tally a file of the session); the platform removes its key, compares with the operator's setup, counts
   (per declared group when asked: every declared group is in the answer, values
   outside the declaration in none), adds noise of scale ``1 / epsilon`` (one item lies
   in at most one group, so the L1 sensitivity is 1), and in one transaction charges
   the epsilon, records the session's outcome and releases the job. The session key and
   the operator's setup are deleted.

Each session is a job row (kind ``psi_count``): ``submitted``, then ``refused``, or
``queued`` and ``running`` (round 1), ``checking`` and ``released`` (round 2), or
``failed``. Each is a row of ``psi_sessions`` too (mode ``count``), so the daily cap of the
terms counts count sessions, refused ones included, with the match sessions. The ledger
holds sizes, rules, epsilons and the released noisy counts, never an item (clear or
encrypted) and never a true count.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import private_set_intersection.python as psi_lib
from google.protobuf.message import DecodeError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs import get_kind
from jobs.base import one_table_scope
from jobs.psi_match import KIND as GATE_KIND
from jobs.psi_match import ask_request, pack_message, unpack_message
from policies.domains import Codes
from policies.errors import (
    Conflict,
    InputError,
    PolicyRefusal,
    SandboxError,
)
from policies.psi import COUNT_MODE, PsiAsk, PsiMode, PsiTerms, check_count_ask
from policies.suggest import did_you_mean
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import inserted_id
from sandbox.data.grants import may_run
from sandbox.data.places import scoped
from sandbox.data.vault import DatasetVersion, get_version
from sandbox.guard import dp_budget
from sandbox.psi.count_request import column_items, encrypt_column
from sandbox.psi.sessions import record_refused, session_values, used_today
from sandbox.psi.tables import psi_sessions
from sandbox.psi.terms import terms_for
from sandbox.run.jobstate import JobState, may_transition, open_job, state_of, transition

KIND = "psi_count"  # the job rows' kind; the gate asks for psi_match (the agreement's kind)
ARTICLE = "Art. 15"
FIELDS = {"dataset", "column", "group_by"}
NO_BUDGET = "psi_count_no_budget"
UNDECLARED = "psi_group_undeclared"
BAD_SETUP = "the setup is not a serialised ServerSetup of the PSI library in RAW form"


@dataclass(frozen=True)
class _Admitted:
    version: DatasetVersion
    terms: PsiTerms
    mode: dp_budget.DpMode
    used_today: int
    groups: tuple[str, ...] | None  # the declared codes of the group column


# --- paths -----------------------------------------------------------------------------------


def session_folder(platform: Platform, session_id: int) -> Path:
    return platform.home / "psi-count" / str(session_id)


def session_key_path(platform: Platform, session_id: int) -> Path:
    return platform.home / "keys" / "psi" / "count" / f"{session_id}.key"


def forget_session(platform: Platform, session_id: int) -> None:
    """The session key and the operator's setup serve nobody once the session ended."""
    session_key_path(platform, session_id).unlink(missing_ok=True)
    shutil.rmtree(session_folder(platform, session_id), ignore_errors=True)


def _write_key(platform: Platform, session_id: int, key: bytes) -> None:
    path = session_key_path(platform, session_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)


# --- round 1 ---------------------------------------------------------------------------------


def _parse(header: dict, payload: bytes) -> tuple[PsiAsk, int]:
    """The request (never an item) and the setup's element count."""
    unknown = sorted(set(header) - FIELDS)
    if unknown:
        raise InputError(f"unknown field '{unknown[0]}'; " + did_you_mean(unknown[0], FIELDS))
    for name in ("dataset", "column"):
        if not isinstance(header.get(name), str) or not header[name]:
            raise InputError(f"'{name}' is required: the dataset and column to count against")
    group_by = header.get("group_by")
    if group_by is not None and (not isinstance(group_by, str) or not group_by):
        raise InputError("'group_by' must name a public column, or be left out")
    setup = psi_lib.ServerSetup()
    try:
        setup.ParseFromString(payload)
    except DecodeError:
        raise InputError(BAD_SETUP) from None
    if not setup.HasField("raw"):
        raise InputError(BAD_SETUP)
    size = len(set(setup.raw.encrypted_elements))
    ask = PsiAsk(header["dataset"], header["column"], PsiMode.CARDINALITY, size, None, group_by)
    return ask, size


def _admit(
    conn: Connection, platform: Platform, operator: Principal, ask: PsiAsk, job_id: int
) -> _Admitted:
    """Everything decided before a thing is computed; raises the first refusal."""
    version = get_version(conn, platform, ask.dataset)
    classification = version.classification
    get_kind(GATE_KIND).plan(ask_request(ask), one_table_scope(ask.dataset, classification))
    used_cols = [ask.column] + ([ask.group_by] if ask.group_by else [])
    used = may_run(conn, operator, [ask.dataset], GATE_KIND, columns={ask.dataset: used_cols})
    version = scoped(
        conn, platform, version, used[ask.dataset].agreement_id
    )  # its county's rows (Art. 5)
    terms = terms_for(conn, used[ask.dataset], ask.dataset, ask.column)
    today = used_today(conn, operator, terms) if terms is not None else 0
    terms = check_count_ask(terms, ask, used_today=today)
    groups = None
    if ask.group_by is not None:
        domain = classification.domains.get(ask.group_by)
        if not isinstance(domain, Codes):
            raise PolicyRefusal(
                UNDECLARED,
                f"column '{ask.group_by}' has no declared code list; counts are given on "
                "the declared grid of a group column only (every declared group, no other)",
                article=ARTICLE,
                subject=ask.group_by,
                hint="ask the provider to declare the column's codes under 'domains'",
            )
        groups = tuple(str(code) for code in domain.values)
    mode = dp_budget.mode_for(conn, used, ask.dataset, classification.entity_kind)
    if mode is None:
        raise PolicyRefusal(
            NO_BUDGET,
            f"your agreement has no differential-privacy budget for '{ask.dataset}': a count "
            "session releases a noisy count charged to it",
            article=ARTICLE,
            subject=ask.dataset,
            hint="ask the authority to put the agreement's use of the dataset in the DP mode "
            "(sandbox dp configure) and to give it a share of the year's budget",
        )
    year = dp_budget.year_of_job(conn, job_id)
    current = dp_budget.balance(conn, mode.agreement_id, mode.population, year)
    refused = dp_budget.refusal(current, mode.per_query)
    if refused is not None:
        raise refused
    return _Admitted(version, terms, mode, today, groups)


def _open_job(platform: Platform, operator: Principal, ask: PsiAsk) -> int:
    asked = {
        "dataset": ask.dataset,
        "column": ask.column,
        "group_by": ask.group_by,
        "list_size": ask.list_size,
    }
    return open_job(platform, operator, KIND, asked)


def _end_job(
    platform: Platform,
    conn: Connection,
    operator: Principal,
    job_id: int,
    state: JobState,
    exc: Exception,
) -> None:
    reason = (
        exc.to_dict()
        if isinstance(exc, SandboxError)
        else {
            "code": "internal_error",
            "message": "the platform failed during the PSI count; nothing was released",
            "article": "Art. 8",
        }
    )
    if not may_transition(state_of(conn, job_id), state):
        return
    transition(
        platform,
        conn,
        job_id,
        operator,
        state,
        {"rule": reason.get("rule") or reason.get("code"), "error": type(exc).__name__},
        reason.get("article") or ARTICLE,
        reason_json=json.dumps(reason),
    )


def _refuse(
    platform: Platform, operator: Principal, job_id: int, ask: PsiAsk, exc: SandboxError
) -> None:
    """The job ``refused``; and, when terms cover the column, a refused session that counts
    toward their daily cap (refusals cannot probe for free), ledgered as ``psi.refused``."""
    with platform.store.transaction() as conn:
        state = JobState.REFUSED if isinstance(exc, PolicyRefusal) else JobState.FAILED
        _end_job(platform, conn, operator, job_id, state, exc)
        if isinstance(exc, PolicyRefusal):
            record_refused(
                platform, conn, operator, ask, exc, mode=COUNT_MODE, article=ARTICLE,
                extra={"job": job_id},
            )  # fmt: skip


def _start(
    platform: Platform, operator: Principal, ask: PsiAsk, job_id: int, first: _Admitted
) -> tuple[int, _Admitted]:
    """Under the write lock: admitted again (the cap, the budget, a new version), the
    session's row, ``queued`` and ``running``, ``psi.count.open``."""
    with platform.store.transaction() as conn:
        admitted = _admit(conn, platform, operator, ask, job_id)
        if admitted.version.version != first.version.version:
            raise Conflict("a new version was registered meanwhile; send the request again")
        version = admitted.version
        values = session_values(operator, admitted.terms, ask, version.version, COUNT_MODE)
        inserted = conn.execute(psi_sessions.insert().values(**values, status="open"))
        session_id = int(inserted_id(inserted))
        inputs = [
            {"dataset": version.dataset, "version": version.version, "sha256": version.sha256}
        ]
        transition(
            platform,
            conn,
            job_id,
            operator,
            JobState.QUEUED,
            {"inputs": inputs, "psi_session": session_id},
            "Art. 14",
            inputs_json=json.dumps(inputs),
        )
        transition(platform, conn, job_id, operator, JobState.RUNNING, {"engine": "psi"})
        platform.record(
            conn,
            operator.actor,
            "psi.count.open",
            f"psi:{session_id}",
            {
                "job": job_id,
                "dataset": ask.dataset,
                "version": version.version,
                "column": ask.column,
                "group_by": ask.group_by,
                "list_size": ask.list_size,
                "terms": admitted.terms.id,
                "agreement": admitted.mode.agreement_id,
                "epsilon": admitted.mode.per_query,
                "requests_today": admitted.used_today + 1,
            },
            ARTICLE,
        )
    return session_id, admitted


EXPIRY_S = 3600  # an unanswered count session is ended after an hour (its key deleted)


def expire(platform: Platform, now: datetime | None = None) -> list[int]:
    """End the count sessions left unanswered for :data:`EXPIRY_S`: status ``expired``,
    their job ``failed``, their key and the operator's setup deleted. Nothing was released
    or spent. Run whenever a count session is opened; returns the sessions ended."""
    moment = now or datetime.now(UTC)
    cutoff = (moment - timedelta(seconds=EXPIRY_S)).isoformat(timespec="microseconds")
    with platform.store.read() as conn:
        rows = conn.execute(
            select(psi_sessions.c.id, psi_sessions.c.operator_id).where(
                psi_sessions.c.mode == COUNT_MODE,
                psi_sessions.c.status == "open",
                psi_sessions.c.updated_at < cutoff,
            )
        ).all()
    ended = []
    for row in rows:
        meta_path = session_folder(platform, row.id) / "meta.json"
        job_id = (
            json.loads(meta_path.read_text(encoding="utf-8"))["job"] if meta_path.exists() else None
        )
        with platform.store.transaction() as conn:
            operator = by_id(conn, row.operator_id)
            done = conn.execute(
                psi_sessions.update()
                .where(psi_sessions.c.id == row.id, psi_sessions.c.status == "open")
                .values(status="expired", updated_at=now_utc())
            ).rowcount
            if not done:
                continue
            if job_id is not None:
                _end_job(
                    platform,
                    conn,
                    operator,
                    int(job_id),
                    JobState.FAILED,
                    Conflict(f"PSI count session {row.id} was not answered within {EXPIRY_S} s"),
                )
        forget_session(platform, row.id)
        ended.append(row.id)
    return ended


def open_count(platform: Platform, operator: Principal, body: bytes) -> bytes:
    """Round 1: the operator's setup in, the platform's request (and the session) out.

    ``body``: :func:`jobs.psi_match.pack_message` of ``{dataset, column, group_by}`` and
    the operator's serialised RAW ``ServerSetup``. The answer: the same framing, the
    session's header and the platform's serialised ``Request``.
    """
    require_role(operator, Role.OPERATOR, action="run PSI counts", article="Art. 14")
    t0 = time.perf_counter()
    expire(platform)
    header, payload = unpack_message(body)
    ask, _ = _parse(header, payload)
    job_id = _open_job(platform, operator, ask)
    try:
        with platform.store.read() as conn:
            first = _admit(conn, platform, operator, ask, job_id)
        items, positions = column_items(first.version, ask.column, ask.group_by, first.groups)
        session_id, admitted = _start(platform, operator, ask, job_id, first)
    except (PolicyRefusal, InputError, Conflict) as exc:
        _refuse(platform, operator, job_id, ask, exc)
        raise
    except Exception as exc:
        with platform.store.transaction() as conn:
            _end_job(platform, conn, operator, job_id, JobState.FAILED, exc)
        raise
    try:
        reveal = ask.group_by is not None  # the platform needs each match's position
        order = list(range(len(items)))
        random.SystemRandom().shuffle(order)  # the request's order says nothing
        key = psi_lib.client.CreateWithNewKey(reveal).GetPrivateKeyBytes()
        request = encrypt_column(platform, key, reveal, [items[i] for i in order])
        folder = session_folder(platform, session_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "setup.bin").write_bytes(payload)
        meta = {
            "job": job_id,
            "reveal": reveal,
            "request_size": len(items),
            "part_items": platform.settings.psi.chunk_items,
            "groups": list(admitted.groups) if admitted.groups is not None else None,
            "positions": [positions[i] for i in order] if reveal else None,
        }
        (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        _write_key(platform, session_id, key)
    except Exception as exc:
        fail_session(platform, operator, session_id, job_id, exc)
        raise
    answer = {
        "session": session_id,
        "job": job_id,
        "dataset": ask.dataset,
        "version": admitted.version.version,
        "column": ask.column,
        "group_by": ask.group_by,
        "groups": meta["groups"],
        "reveal": reveal,
        "list_size": ask.list_size,
        "request_size": len(items),
        "part_items": meta["part_items"],
        "epsilon": admitted.mode.per_query,
        "open_s": round(time.perf_counter() - t0, 4),
    }
    return pack_message(answer, request)


def fail_session(
    platform: Platform, operator: Principal, session_id: int, job_id: int, exc: Exception
) -> None:
    with platform.store.transaction() as conn:
        conn.execute(
            psi_sessions.update()
            .where(psi_sessions.c.id == session_id)
            .values(status="failed", updated_at=now_utc())
        )
        _end_job(platform, conn, operator, job_id, JobState.FAILED, exc)
    forget_session(platform, session_id)


# --- round 2 ---------------------------------------------------------------------------------
