"""The rows of PSI sessions, shared by match sessions (:mod:`sandbox.psi.service`) and
count sessions (:mod:`sandbox.psi.counts`): the day they count toward, how many an
operator opened today under one set of terms, a new row's values, and the refused
session a refusal leaves behind so that refusals count toward the daily cap too."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from jobs.psi_match import KIND
from policies.errors import PolicyRefusal, SandboxError
from policies.psi import PsiAsk, PsiTerms
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.core.store import inserted_id
from sandbox.data.grants import may_run
from sandbox.data.vault import get_version
from sandbox.psi.tables import psi_sessions
from sandbox.psi.terms import terms_for


def today() -> str:
    """The UTC day a session counts toward (the terms' daily cap)."""
    return datetime.now(UTC).date().isoformat()


def used_today(conn: Connection, operator: Principal, terms: PsiTerms) -> int:
    """Sessions the operator opened today under these terms, refused ones included."""
    return conn.execute(
        select(func.count())
        .select_from(psi_sessions)
        .where(
            psi_sessions.c.operator_id == operator.id,
            psi_sessions.c.terms_id == terms.id,
            psi_sessions.c.day == today(),
        )
    ).scalar_one()


def session_values(
    operator: Principal, terms: PsiTerms, ask: PsiAsk, version: int, mode: str
) -> dict[str, Any]:
    """A new session row's values (its status and set-up key are the caller's)."""
    now = now_utc()
    return {
        "operator_id": operator.id,
        "terms_id": terms.id,
        "dataset": ask.dataset,
        "version": version,
        "column_name": ask.column,
        "group_by": ask.group_by,
        "mode": mode,
        "list_size": ask.list_size,
        "received": 0,
        "chunks": 0,
        "consent_ref": ask.consent,
        "setup_key": "",
        "day": today(),
        "created_at": now,
        "updated_at": now,
    }


def record_refused(
    platform: Platform,
    conn: Connection,
    operator: Principal,
    ask: PsiAsk,
    refusal: PolicyRefusal,
    *,
    mode: str,
    article: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """A refused request still opens a session (status ``refused``) that counts toward
    the daily cap of its terms, so refusals cannot be used to probe for free; ledgered
    as ``psi.refused``. A request no terms cover (the gate's refusals, no terms for the
    column) has no cap to count against and leaves no row."""
    try:
        version = get_version(conn, platform, ask.dataset)
        grant = may_run(conn, operator, [ask.dataset], KIND, columns={ask.dataset: [ask.column]})
        terms = terms_for(conn, grant[ask.dataset], ask.dataset, ask.column)
    except SandboxError:
        return
    if terms is None:
        return
    used = used_today(conn, operator, terms)
    values = session_values(operator, terms, ask, version.version, mode)
    inserted = conn.execute(psi_sessions.insert().values(**values, status="refused"))
    platform.record(
        conn,
        operator.actor,
        "psi.refused",
        f"psi:{inserted_id(inserted)}",
        {
            "dataset": ask.dataset,
            "version": version.version,
            "column": ask.column,
            "group_by": ask.group_by,
            "mode": mode,
            "list_size": ask.list_size,
            "rule": refusal.rule,
            "terms": terms.id,
            **(extra or {}),
            "requests_today": used + 1,
        },
        refusal.article or article,
    )
