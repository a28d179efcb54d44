"""The platform's half of PSI matches: keys, the cached encrypted set, sessions.

ECDH-PSI (openmined-psi): the platform encrypts its column's items under a secret
key (the *setup*); the operator encrypts its list under its own key and sends it;
the platform adds its key to each element and sends them back; the operator
removes its key and compares with the setup. The platform learns the list's
size only; the operator learns the intersection, or in cardinality mode only its
size, because then the platform's library sorts its answer (the reveal switch is
the platform's, set from the terms, never the client's).

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
ledger entry with metadata only; :func:`process_chunk` answers one chunk of the
encrypted list; :func:`close_session` records how it ended. No item, encrypted or
not, is ever written to the store or the ledger.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import private_set_intersection.python as psi_lib
import pyarrow.parquet as pq
from google.protobuf.message import DecodeError
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from connectors.normalise import normalise
from jobs.psi_match import (
    KIND,
    BundleKind,
    check_columns,
    over_persons,
    pack_parts,
    parse_ask,
)
from policies.errors import (
    Conflict,
    InputError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PolicyRefusal,
)
from policies.psi import (
    PsiAsk,
    PsiMode,
    PsiTerms,
    check_ask,
    check_chunk,
    chunk_floor,
    parse_mode,
)
from policies.psi import offered_groups as _offered
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import grants as grants_table
from sandbox.data.grants import may_run
from sandbox.data.vault import DatasetVersion, get_version
from sandbox.psi.tables import psi_sessions, psi_terms
from sandbox.psi.worker import encrypt_shard, merge_raw
from sandbox.workflow.base import require_authority
from sandbox.workflow.jurisdiction import grant_place, require_covers
from sandbox.workflow.tables import agreements

KEY_BYTES = 32


# --- keys ------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def key_path(home: Path, dataset: str, version: int, column: str) -> Path:
    return home / "keys" / "psi" / f"{dataset}.v{version}.{_slug(column)}.key"


def column_key(home: Path, dataset: str, version: int, column: str) -> bytes:
    """The PSI key of one dataset column and version; created on first use (mode 0600)."""
    path = key_path(home, dataset, version, column)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise InputError(f"the PSI key of {dataset} v{version} is damaged") from None
        return key
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


# --- the cached setup ------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupSpec:
    """Everything a setup bundle depends on; its cache name is derived from it."""

    dataset: str
    version: int
    column: str
    group_by: str | None
    threshold: int  # groups only
    structure: str
    fpr: float
    capacity: int

    @property
    def name(self) -> str:
        group = f"{self.group_by}>={self.threshold}" if self.group_by else ""
        parts = f"{self.column}|{group}|{self.structure}|{self.fpr:g}|{self.capacity}"
        return _slug(parts)


@dataclass(frozen=True)
class SetupInfo:
    path: Path
    etag: str
    meta: dict


def _version_dir(home: Path, dataset: str, version: int) -> Path:
    return home / "psi" / dataset / f"v{version}"


def _read_items(
    snapshot: Path, column: str, group_by: str | None
) -> tuple[list[str], dict[str, list[str]]]:
    """Distinct normalised items of the column; per group value too when grouping."""
    names = [column] + ([group_by] if group_by else [])
    table = pq.read_table(snapshot, columns=names)
    values = table.column(column).to_pylist()
    if not group_by:
        seen: dict[str, None] = {}
        for value in values:
            if value is not None and (text := normalise(value)):
                seen.setdefault(text, None)
        return list(seen), {}
    groups: dict[str, dict[str, None]] = {}
    for value, group in zip(values, table.column(group_by).to_pylist(), strict=True):
        if value is None or group is None or not (text := normalise(value)):
            continue
        groups.setdefault(str(group), {}).setdefault(text, None)
    return [], {g: list(items) for g, items in groups.items()}


def _shards(items: list[str], count: int) -> list[list[str]]:
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    out, at = [], 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        out.append(items[at : at + step])
        at += step
    return out


def _encrypt_all(
    key: bytes, spec: SetupSpec, tasks: Sequence[list[str]], processes: int, ray_address: str = ""
) -> list[bytes]:
    if ray_address and len(tasks) > 1:  # issue 9: the shards as Ray tasks
        from sandbox.run.engines.ray_pool import ray_map

        calls = [(key, spec.fpr, spec.capacity, spec.structure, t) for t in tasks]
        return ray_map(encrypt_shard, calls, ray_address, what=f"the PSI setup of '{spec.dataset}'")
    if processes <= 1 or len(tasks) <= 1:
        return [encrypt_shard(key, spec.fpr, spec.capacity, spec.structure, t) for t in tasks]
    # spawn: the server is threaded, and a forked copy of a threaded process may hold
    # locks it can never release. The worker module imports only the PSI library.
    try:
        with ProcessPoolExecutor(
            max_workers=min(processes, len(tasks)), mp_context=get_context("spawn")
        ) as pool:
            futures = [
                pool.submit(encrypt_shard, key, spec.fpr, spec.capacity, spec.structure, t)
                for t in tasks
            ]
            return [f.result() for f in futures]
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        raise JobFailed(
            f"the PSI setup of '{spec.dataset}' could not be built in {processes} processes "
            "(setting psi.build_processes)"
        ) from exc


def build_bundle(
    key: bytes, spec: SetupSpec, snapshot: Path, processes: int, ray_address: str = ""
) -> tuple[bytes, dict]:
    """The setup bundle of a spec and what it is made of (sizes, never items).

    With ``ray_address`` (the ``ray.address`` setting) the shards are Ray tasks."""
    started = time.perf_counter()
    items, groups = _read_items(snapshot, spec.column, spec.group_by)
    read_s = time.perf_counter() - started
    if spec.group_by is None:
        if not items:
            parts = [("", encrypt_shard(key, spec.fpr, spec.capacity, spec.structure, []))]
        else:
            # More shards than processes only when a structure keeps its shards apart.
            blobs = _encrypt_all(key, spec, _shards(items, processes), processes, ray_address)
            if spec.structure == "raw":
                blobs = [merge_raw(blobs)]
            parts = [("", b) for b in blobs]
        kind, meta = BundleKind.SHARDS, {"items": len(items)}
    else:
        sizes = {g: len(v) for g, v in groups.items()}
        offered = _offered(sizes, spec.threshold)
        blobs = _encrypt_all(key, spec, [groups[g] for g in offered], processes, ray_address)
        parts = list(zip(offered, blobs, strict=True))
        kind = BundleKind.GROUPS
        meta = {
            "items": sum(sizes[g] for g in offered),
            "groups_offered": len(offered),
            "groups_withheld": len(sizes) - len(offered),
        }
    bundle = pack_parts(kind, parts)
    meta.update(
        parts=len(parts),
        bytes=len(bundle),
        read_s=round(read_s, 3),
        build_s=round(time.perf_counter() - started, 3),
        processes=processes,
        sha256=hashlib.sha256(bundle).hexdigest(),
    )
    return bundle, meta


def ensure_setup(
    platform: Platform, version: DatasetVersion, spec: SetupSpec
) -> tuple[SetupInfo, bool]:
    """The cached bundle of ``spec``, built now if missing; (info, built_now)."""
    folder = _version_dir(platform.home, spec.dataset, spec.version)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.bundle"
    meta_path = folder / f"{spec.name}.json"
    with open(folder / f"{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            return SetupInfo(path, _etag(meta), meta), False
        key = column_key(platform.home, spec.dataset, spec.version, spec.column)
        processes = platform.settings["psi.build_processes"]
        ray_address = platform.settings["ray.address"]
        bundle, meta = build_bundle(key, spec, version.path, processes, ray_address)
        for target, data in ((path, bundle), (meta_path, json.dumps(meta).encode())):
            part = target.with_suffix(target.suffix + ".part")
            part.write_bytes(data)
            os.replace(part, target)  # a reader sees the whole file or none
    _drop_older(platform.home, spec.dataset, spec.version)
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            SYSTEM,
            "psi.setup_built",
            f"dataset:{spec.dataset}",
            {
                "version": spec.version,
                "column": spec.column,
                "group_by": spec.group_by,
                "structure": spec.structure,
                **{k: meta[k] for k in ("items", "parts", "bytes", "build_s", "processes")},
            },
            "Art. 15",
        )
    return SetupInfo(path, _etag(meta), meta), True


def _etag(meta: dict) -> str:
    return '"' + meta["sha256"][:32] + '"'


def _drop_older(home: Path, dataset: str, version: int) -> None:
    """Bundles of older versions serve nobody once a newer one is built."""
    root = home / "psi" / dataset
    for child in root.iterdir():
        if (
            child.name.startswith("v")
            and child.name[1:].isdigit()
            and int(child.name[1:]) < version
        ):
            shutil.rmtree(child, ignore_errors=True)


# --- terms -----------------------------------------------------------------------------------


def _terms_from_row(row) -> PsiTerms:
    return PsiTerms(
        id=row.id,
        dataset=row.dataset,
        column=row.column_name,
        mode=PsiMode(row.mode),
        min_items=row.min_items,
        max_items=row.max_items,
        daily_cap=row.daily_cap,
        group_dimensions=frozenset(json.loads(row.group_dimensions_json)),
        group_threshold=row.group_threshold,
        consent_required=bool(row.consent_required),
        agreement_id=row.agreement_id,
        grant_id=row.grant_id,
    )


def terms_for(conn: Connection, grant, dataset: str, column: str) -> PsiTerms | None:
    """The terms that apply through ``grant``: its agreement's, or its own if direct."""
    scope = (
        psi_terms.c.agreement_id == grant.agreement_id
        if grant.agreement_id is not None
        else psi_terms.c.grant_id == grant.id
    )
    row = conn.execute(
        select(psi_terms).where(
            scope, psi_terms.c.dataset == dataset, psi_terms.c.column_name == column
        )
    ).first()
    return _terms_from_row(row) if row is not None else None


def set_terms(
    platform: Platform,
    authority: Principal,
    *,
    dataset: str,
    column: str,
    agreement_id: int | None = None,
    grant_id: int | None = None,
    mode: str | PsiMode = PsiMode.CARDINALITY,
    min_items: int | None = None,
    max_items: int | None = None,
    daily_cap: int | None = None,
    group_dimensions: Sequence[str] = (),
    group_threshold: int | None = None,
    consent_required: bool = False,
) -> int:
    """An authority sets (or replaces) the PSI terms of one dataset column (Art. 13)."""
    require_role(authority, Role.AUTHORITY, action="set PSI terms", article="Art. 13")
    settings = platform.settings

    def given_or(value, setting: str):
        return value if value is not None else settings[setting]

    terms = PsiTerms(
        dataset=dataset,
        column=column,
        mode=parse_mode(mode),
        min_items=given_or(min_items, "psi.min_items"),
        max_items=given_or(max_items, "psi.max_items"),
        daily_cap=given_or(daily_cap, "psi.daily_cap"),
        group_dimensions=frozenset(group_dimensions),
        group_threshold=given_or(group_threshold, "psi.group_threshold"),
        consent_required=consent_required,
        agreement_id=agreement_id,
        grant_id=grant_id,
    )
    if terms.max_items > settings["psi.max_items"]:
        raise InputError(
            f"max_items {terms.max_items} is over the platform's psi.max_items "
            f"({settings['psi.max_items']})"
        )
    with platform.store.transaction() as conn:
        version = get_version(conn, platform, dataset)
        check_columns(version.classification, column, None)
        for dim in terms.group_dimensions:
            check_columns(version.classification, column, dim)
        if agreement_id is not None:
            _check_agreement_covers(conn, authority, terms, agreement_id)
            where, subject = psi_terms.c.agreement_id == agreement_id, f"agreement:{agreement_id}"
        else:
            row = conn.execute(select(grants_table).where(grants_table.c.id == grant_id)).first()
            if row is None or row.dataset_id != version.dataset_id:
                raise NotFound(f"no grant {grant_id} for dataset '{dataset}'")
            # a direct grant's terms are the city's; a grant under an agreement, its place's
            require_covers(authority, grant_place(conn, grant_id), "set PSI terms", "Art. 13")
            where, subject = psi_terms.c.grant_id == grant_id, f"grant:{grant_id}"
        terms_id = _store_terms(conn, authority, terms, where)
        platform.record(
            conn,
            authority.actor,
            "psi.terms",
            subject,
            terms.to_dict() | {"id": terms_id},
            "Art. 13",
        )
    return terms_id


def _check_agreement_covers(
    conn: Connection, authority: Principal, terms: PsiTerms, agreement_id: int
) -> None:
    """The agreement exists, is the authority's to rule on, and covers the dataset, the
    columns (the key and every group dimension) and PSI jobs (Art. 13)."""
    row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if row is None:
        raise NotFound(f"no agreement {agreement_id}")
    require_authority(authority, row.jurisdiction, "set PSI terms", "Art. 13")
    scope = json.loads(row.scope_json)
    if terms.dataset not in scope["datasets"]:
        raise InputError(
            f"dataset '{terms.dataset}' is outside agreement {agreement_id}", article="Art. 13"
        )
    allowed = scope["datasets"][terms.dataset]
    used = [terms.column, *sorted(terms.group_dimensions)]
    outside = [c for c in used if allowed is not None and c not in allowed]
    if outside:
        raise InputError(
            f"column '{outside[0]}' is outside agreement {agreement_id}", article="Art. 13"
        )
    if KIND not in scope["job_kinds"]:
        raise InputError(
            f"agreement {agreement_id} does not include '{KIND}' jobs", article="Art. 13"
        )


def _store_terms(conn: Connection, authority: Principal, terms: PsiTerms, where) -> int:
    """Insert the terms, or replace those of the same owner, dataset and column."""
    values = {
        "mode": terms.mode.value,
        "min_items": terms.min_items,
        "max_items": terms.max_items,
        "daily_cap": terms.daily_cap,
        "group_dimensions_json": json.dumps(sorted(terms.group_dimensions)),
        "group_threshold": terms.group_threshold,
        "consent_required": terms.consent_required,
        "set_by": authority.id,
        "created_at": now_utc(),
    }
    existing = conn.execute(
        select(psi_terms.c.id).where(
            where, psi_terms.c.dataset == terms.dataset, psi_terms.c.column_name == terms.column
        )
    ).first()
    if existing is not None:
        conn.execute(psi_terms.update().where(psi_terms.c.id == existing.id).values(**values))
        return existing.id
    return conn.execute(
        psi_terms.insert().values(
            agreement_id=terms.agreement_id,
            grant_id=terms.grant_id,
            dataset=terms.dataset,
            column_name=terms.column,
            **values,
        )
    ).inserted_primary_key[0]


# --- sessions --------------------------------------------------------------------------------


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _spec(platform: Platform, version: DatasetVersion, ask: PsiAsk, terms: PsiTerms) -> SetupSpec:
    settings = platform.settings
    return SetupSpec(
        dataset=version.dataset,
        version=version.version,
        column=ask.column,
        group_by=ask.group_by,
        threshold=terms.group_threshold if ask.group_by else 0,
        structure=settings["psi.data_structure"],
        fpr=settings["psi.fpr"],
        capacity=settings["psi.max_items"],
    )


def _admit(
    conn: Connection, platform: Platform, operator: Principal, ask: PsiAsk
) -> tuple[DatasetVersion, PsiTerms, int]:
    """The gate and the terms; returns (latest version, terms, sessions used today)."""
    version = get_version(conn, platform, ask.dataset)
    check_columns(version.classification, ask.column, ask.group_by)
    used_cols = [ask.column] + ([ask.group_by] if ask.group_by else [])
    grant = may_run(conn, operator, [ask.dataset], KIND, columns={ask.dataset: used_cols})[
        ask.dataset
    ]
    terms = terms_for(conn, grant, ask.dataset, ask.column)
    used = 0
    if terms is not None:
        used = conn.execute(
            select(func.count())
            .select_from(psi_sessions)
            .where(
                psi_sessions.c.operator_id == operator.id,
                psi_sessions.c.terms_id == terms.id,
                psi_sessions.c.day == _today(),
            )
        ).scalar_one()
    check_ask(
        terms, ask, used_today=used, over_persons=over_persons(version.classification, ask.column)
    )
    return version, terms, used


def open_session(platform: Platform, operator: Principal, request: Mapping[str, Any]) -> dict:
    """Admit a match request, make sure its setup is built, and open its session."""
    require_role(operator, Role.OPERATOR, action="run PSI matches", article="Art. 14")
    ask = parse_ask(request)
    with platform.store.read() as conn:
        version, terms, _ = _admit(conn, platform, operator, ask)
    spec = _spec(platform, version, ask, terms)
    info, built = ensure_setup(platform, version, spec)
    settings = platform.settings
    floor = chunk_floor(terms.min_items, settings["psi.chunk_items"])
    with platform.store.transaction() as conn:
        # Checked again under the write lock: the daily cap and the agreement may have
        # changed while the setup was built.
        version2, terms, used = _admit(conn, platform, operator, ask)
        if version2.version != version.version:
            raise Conflict("a new version was registered meanwhile; send the request again")
        now = now_utc()
        session_id = conn.execute(
            psi_sessions.insert().values(
                operator_id=operator.id,
                terms_id=terms.id,
                dataset=ask.dataset,
                version=version.version,
                column_name=ask.column,
                group_by=ask.group_by,
                mode=ask.mode.value,
                list_size=ask.list_size,
                received=0,
                chunks=0,
                consent_ref=ask.consent,
                setup_key=spec.name,
                status="open",
                day=_today(),
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
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
    return {
        "session": session_id,
        "dataset": ask.dataset,
        "version": version.version,
        "column": ask.column,
        "group_by": ask.group_by,
        "mode": ask.mode.value,
        "reveal": ask.mode.reveals_items,
        "list_size": ask.list_size,
        "chunk_items": settings["psi.chunk_items"],
        "chunk_floor": floor,
        "etag": info.etag,
        "setup_bytes": info.meta["bytes"],
        "setup_built_now": built,
    }


def _session(conn: Connection, operator: Principal, session_id: int):
    row = conn.execute(select(psi_sessions).where(psi_sessions.c.id == session_id)).first()
    if row is None or row.operator_id != operator.id:
        raise NotFound(f"no PSI session {session_id} of yours")
    return row


def setup_of(platform: Platform, operator: Principal, session_id: int) -> SetupInfo:
    """The setup bundle a session matches against (the operator's own open session)."""
    with platform.store.read() as conn:
        row = _session(conn, operator, session_id)
    if row.status != "open":
        raise Conflict(f"PSI session {session_id} is {row.status}")
    folder = _version_dir(platform.home, row.dataset, row.version)
    meta_path = folder / f"{row.setup_key}.json"
    if not meta_path.exists():
        raise Conflict(f"the setup of PSI session {session_id} is gone: a newer version exists")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return SetupInfo(folder / f"{row.setup_key}.bundle", _etag(meta), meta)


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
    cap = platform.settings["psi.chunk_items"]
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
        terms_row = conn.execute(select(psi_terms).where(psi_terms.c.id == row.terms_id)).first()
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
