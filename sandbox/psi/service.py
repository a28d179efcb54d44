"""The platform's half of PSI matches: keys, the cached encrypted set, sessions.

ECDH-PSI (openmined-psi): the platform encrypts its column's items under a secret
key (the *setup*); the operator encrypts its list under its own key and sends it;
the platform adds its key to each element and sends them back; the operator
removes its key and compares with the setup. The platform learns the list's
size only; the operator learns the intersection, or in cardinality mode only its
size, because then the platform's library sorts its answer (the reveal switch is
the platform's, set from the terms, never the client's). That holds for an honest
client only: one that encrypts each item under its own key learns which items
matched, undetectably, so the terms' rules for persons treat cardinality as
membership (:mod:`policies.psi`; docs/psi.md).

Keys: a fresh 32-byte key per dataset column **and version**, in
``keys/psi/`` (file mode 0600), never in the store, never in a job worker. What a
client learned against one version is worthless against the next.

Setup: built once per (dataset version, column, group dimension, data structure,
fpr), in parallel (shards under one key in ``psi.build_processes`` processes),
written to ``psi/<dataset>/v<version>/`` and reused by every request; the
bundles of older versions are removed when a newer one is built. A file lock
keeps two server processes from building the same bundle twice.

Sessions: :func:`open_session` asks the one gate (:func:`sandbox.data.grants.may_run`,
job kind ``psi_match``) and the PSI terms (:mod:`policies.psi`), and writes a
ledger entry with metadata only; a request the terms refuse is a session too
(status ``refused``, ledgered as ``psi.refused``), counted by the daily cap like
any other, so refusals cannot probe for free; :func:`process_chunk` answers one chunk of the
encrypted list; :func:`close_session` records how it ended. No item, encrypted or
not, is ever written to the store or the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import private_set_intersection.python as psi_lib
from google.protobuf.message import DecodeError
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs import get_kind
from jobs.base import one_table_scope
from jobs.psi_match import KIND, ask_request, parse_ask
from policies.errors import (
    Conflict,
    InputError,
    NotFound,
    PayloadTooLarge,
    PolicyRefusal,
)
from policies.psi import (
    COUNT_MODE,
    PsiAsk,
    PsiMode,
    PsiTerms,
    check_ask,
    check_chunk,
    chunk_floor,
)
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import inserted_id
from sandbox.data.grants import may_run
from sandbox.data.places import scoped
from sandbox.data.vault import DatasetVersion, get_version
from sandbox.psi.sessions import record_refused, session_values, used_today
from sandbox.psi.setup import (
    SetupInfo,
    SetupSpec,
    column_key,
    ensure_setup,
    setup_etag,
    version_dir,
)
from sandbox.psi.tables import psi_sessions, psi_terms
from sandbox.psi.terms import (
    terms_for,
)

# --- sessions --------------------------------------------------------------------------------


def _spec(platform: Platform, version: DatasetVersion, ask: PsiAsk, terms: PsiTerms) -> SetupSpec:
    settings = platform.settings
    return SetupSpec(
        dataset=version.dataset,
        version=version.version,
        column=ask.column,
        group_by=ask.group_by,
        threshold=terms.group_threshold if ask.group_by else 0,
        structure=settings.psi.data_structure,
        fpr=settings.psi.fpr,
        capacity=settings.psi.max_items,
        county=version.county,
    )


def _admit(
    conn: Connection, platform: Platform, operator: Principal, ask: PsiAsk
) -> tuple[DatasetVersion, PsiTerms, int]:
    """The gate and the terms; returns (latest version, terms, sessions used today)."""
    version = get_version(conn, platform, ask.dataset)
    plan = get_kind(KIND).plan(
        ask_request(ask), one_table_scope(ask.dataset, version.classification)
    )
    used_cols = [ask.column] + ([ask.group_by] if ask.group_by else [])
    grant = may_run(conn, operator, [ask.dataset], KIND, columns={ask.dataset: used_cols})[
        ask.dataset
    ]
    version = scoped(conn, platform, version, grant.agreement_id)  # a county's rows only (Art. 5)
    terms = terms_for(conn, grant, ask.dataset, ask.column)
    used = used_today(conn, operator, terms) if terms is not None else 0
    allowed = check_ask(terms, ask, used_today=used, over_persons=plan.over_persons)
    return version, allowed, used


def _record_refusal(
    platform: Platform, operator: Principal, ask: PsiAsk, refusal: PolicyRefusal
) -> None:
    """A refused match request, counted toward the terms' daily cap (:func:`record_refused`)."""
    with platform.store.transaction() as conn:
        record_refused(
            platform, conn, operator, ask, refusal, mode=ask.mode.value, article="Art. 13"
        )


def open_session(platform: Platform, operator: Principal, request: Mapping[str, Any]) -> dict:
    """Admit a match request, make sure its setup is built, and open its session.

    A refusal by the PSI terms still counts toward the daily cap (:func:`_record_refusal`).
    """
    require_role(operator, Role.OPERATOR, action="run PSI matches", article="Art. 14")
    ask = parse_ask(request)
    try:
        with platform.store.read() as conn:
            version, terms, _ = _admit(conn, platform, operator, ask)
        spec = _spec(platform, version, ask, terms)
        info, built = ensure_setup(platform, version, spec)
        session_id, used = _open(platform, operator, ask, version, spec)
    except PolicyRefusal as refusal:
        _record_refusal(platform, operator, ask, refusal)
        raise
    settings = platform.settings
    return {
        "session": session_id,
        "dataset": ask.dataset,
        "version": version.version,
        "column": ask.column,
        "group_by": ask.group_by,
        "mode": ask.mode.value,
        "reveal": ask.mode.reveals_items,
        "list_size": ask.list_size,
        "chunk_items": settings.psi.chunk_items,
        "chunk_floor": chunk_floor(terms.min_items, settings.psi.chunk_items),
        "etag": info.etag,
        "setup_bytes": info.meta["bytes"],
        "setup_built_now": built,
    }


def _open(
    platform: Platform, operator: Principal, ask: PsiAsk, version: DatasetVersion, spec: SetupSpec
) -> tuple[int, int]:
    """The session's row and its ``psi.open`` entry; returns (session id, used before)."""
    with platform.store.transaction() as conn:
        # Checked again under the write lock: the daily cap and the agreement may have
        # changed while the setup was built.
        version2, terms, used = _admit(conn, platform, operator, ask)
        if version2.version != version.version:
            raise Conflict("a new version was registered meanwhile; send the request again")
        values = session_values(operator, terms, ask, version.version, ask.mode.value)
        inserted = conn.execute(
            psi_sessions.insert().values({**values, "setup_key": spec.name, "status": "open"})
        )
        session_id = inserted_id(inserted)
        platform.record(
            conn,
            operator.actor,
            "psi.open",
            f"psi:{session_id}",
            {
                "dataset": ask.dataset,
                "version": version.version,
                "column": ask.column,
                "group_by": ask.group_by,
                "mode": ask.mode.value,
                "list_size": ask.list_size,
                "consent": ask.consent,
                "terms": terms.id,
                "requests_today": used + 1,
            },
            "Art. 19" if ask.consent else "Art. 15",
        )
    return session_id, used


def _session(conn: Connection, operator: Principal, session_id: int):
    row = conn.execute(select(psi_sessions).where(psi_sessions.c.id == session_id)).first()
    # a count session (sandbox.psi.counts) is not a match session: not found here
    if row is None or row.operator_id != operator.id or row.mode == COUNT_MODE:
        raise NotFound(f"no PSI session {session_id} of yours")
    return row


def setup_of(platform: Platform, operator: Principal, session_id: int) -> SetupInfo:
    """The setup bundle a session matches against (the operator's own open session)."""
    with platform.store.read() as conn:
        row = _session(conn, operator, session_id)
    if row.status != "open":
        raise Conflict(f"PSI session {session_id} is {row.status}")
    folder = version_dir(platform.home, row.dataset, row.version)
    meta_path = folder / f"{row.setup_key}.json"
    if not meta_path.exists():
        raise Conflict(f"the setup of PSI session {session_id} is gone: a newer version exists")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return SetupInfo(folder / f"{row.setup_key}.bundle", setup_etag(meta), meta)


def chunk_session(platform: Platform, operator: Principal, session_id: int) -> None:
    """May ``operator`` send a chunk to this session? Asked before the chunk is read.

    The session must exist and be the operator's own (else the same ``not_found``
    for both, so nothing is learnt about other operators' sessions), and be open.
    Only then is the body read and parsed: another principal's large or malformed
    body costs a store read, and its answer does not depend on what it holds.
    """
    with platform.store.read() as conn:
        row = _session(conn, operator, session_id)
    if row.status != "open":
        raise Conflict(f"PSI session {session_id} is {row.status}")


def process_chunk(platform: Platform, operator: Principal, session_id: int, body: bytes) -> bytes:
    """Answer one chunk of the operator's encrypted list (a serialised psi Request).

    The session is checked (:func:`chunk_session`) before the body is parsed, and
    again, with the gate, in the transaction that counts the chunk.
    """
    chunk_session(platform, operator, session_id)
    request = psi_lib.Request()
    try:
        request.ParseFromString(body)
    except DecodeError:
        raise InputError("the PSI chunk is not a serialised request of the PSI library") from None
    elements = request.encrypted_elements
    cap = platform.settings.psi.chunk_items
    if len(elements) > cap:
        raise PayloadTooLarge(
            f"a chunk of {len(elements)} items is over the limit of {cap} "
            "(setting psi.chunk_items); split the list"
        )
    distinct = len(set(elements))
    with platform.store.transaction() as conn:
        row = _session(conn, operator, session_id)
        if row.status != "open":
            raise Conflict(f"PSI session {session_id} is {row.status}")
        # The gate again: a suspension takes effect between two chunks (Art. 24).
        may_run(conn, operator, [row.dataset], KIND)
        reveal = PsiMode(row.mode).reveals_items
        if request.reveal_intersection != reveal:
            raise PolicyRefusal(
                "psi_mode_not_allowed",
                f"this session is in {row.mode} mode; the chunk asks for "
                + ("the items" if request.reveal_intersection else "the size only"),
                article="Art. 13",
                subject=f"psi:{session_id}",
            )
        terms_row = conn.execute(select(psi_terms).where(psi_terms.c.id == row.terms_id)).one()
        floor = chunk_floor(min(terms_row.min_items, row.list_size), cap)
        check_chunk(
            items=len(elements),
            distinct=distinct,
            floor=floor,
            received=row.received,
            declared=row.list_size,
        )
        conn.execute(
            psi_sessions.update()
            .where(psi_sessions.c.id == session_id)
            .values(
                received=row.received + len(elements),
                chunks=row.chunks + 1,
                updated_at=now_utc(),
            )
        )
        platform.record(
            conn,
            operator.actor,
            "psi.chunk",
            f"psi:{session_id}",
            {
                "chunk": row.chunks + 1,
                "items": len(elements),
                "received": row.received + len(elements),
            },
            "Art. 15",
        )
    key = column_key(platform.home, row.dataset, row.version, row.column_name)
    server = psi_lib.server.CreateFromKey(key, reveal)
    try:
        return server.ProcessRequest(request).SerializeToString()
    except RuntimeError as exc:
        raise InputError(f"the PSI chunk was refused by the PSI library: {exc}") from exc


def close_session(
    platform: Platform, operator: Principal, session_id: int, result_size: int | None = None
) -> dict:
    """End a session; in cardinality mode the client may report the size it learned."""
    with platform.store.transaction() as conn:
        row = _session(conn, operator, session_id)
        if row.status != "open":
            raise Conflict(f"PSI session {session_id} is {row.status}")
        reported = result_size if row.mode == PsiMode.CARDINALITY.value else None
        conn.execute(
            psi_sessions.update()
            .where(psi_sessions.c.id == session_id)
            .values(status="closed", result_size=reported, updated_at=now_utc())
        )
        details = {
            "dataset": row.dataset,
            "version": row.version,
            "column": row.column_name,
            "mode": row.mode,
            "list_size": row.list_size,
            "received": row.received,
            "chunks": row.chunks,
        }
        if reported is not None:
            details["result_size"] = reported
            details["result_size_source"] = "reported by the operator's client"
        platform.record(conn, operator.actor, "psi.close", f"psi:{session_id}", details, "Art. 16")
    return {"session": session_id, "status": "closed", **details}


# --- the in-process transport (the CLI on the platform's host) ------------------------------


class LocalTransport:
    """The client half's view of the platform, in-process: the same functions the HTTP
    routes call, so the CLI without ``--server`` follows the same path."""

    def __init__(self, platform: Platform, operator: Principal):
        self.platform = platform
        self.operator = operator

    def open(self, request: Mapping[str, Any]) -> dict:
        return open_session(self.platform, self.operator, request)

    def setup(self, session: dict, etag: str | None) -> tuple[str, bytes | None]:
        info = setup_of(self.platform, self.operator, session["session"])
        if etag == info.etag:
            return info.etag, None
        return info.etag, info.path.read_bytes()

    def chunk(self, session: dict, body: bytes) -> bytes:
        return process_chunk(self.platform, self.operator, session["session"], body)

    def close(self, session: dict, result_size: int | None) -> None:
        close_session(self.platform, self.operator, session["session"], result_size)
