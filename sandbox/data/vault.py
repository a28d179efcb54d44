"""The dataset vault: content-addressed Parquet snapshots of each dataset version.

A provider registers a dataset from a source URI with a classification. The
source is streamed as Arrow record batches into a Parquet file in a private
work folder (bounded memory), hashed, and moved into
``vault/<sha[:2]>/<sha>.parquet``. Re-registering unchanged data (and an
unchanged classification) keeps the version; anything else makes version n+1.
Old versions stay readable for lineage. The profile (Art. 14) is computed from
the snapshot and stays inside the platform.

Order of work, so that nothing is half-registered: every check that can refuse
runs before a byte is written; the snapshot is complete and renamed into place
before the store transaction; if that transaction fails, a snapshot that no
version references is removed.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from connectors import open_source
from connectors.quality import profile_parquet
from policies.classes import Classification
from policies.domains import check_values
from policies.errors import ClassificationError, Conflict, InputError, NotFound, SandboxError
from policies.suggest import did_you_mean
from sandbox.core import storage
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.storage import sha256_file as _sha256
from sandbox.core.store import dataset_versions, datasets
from sandbox.data.kept_sources import keep_source

ProgressFn = Callable[[int, int, int | None], None]  # rows, bytes read, total bytes


@dataclass(frozen=True)
class DatasetVersion:
    dataset: str
    dataset_id: int
    version: int
    sha256: str
    path: Path  # absolute
    rows: int
    bytes: int
    classification: Classification
    profile: dict
    provider_id: int
    created_at: str
    # a county's slice (sandbox.data.places): its county, the snapshot it is cut from
    county: str | None = None
    source: Path | None = None


@dataclass(frozen=True)
class RegisterResult:
    version: DatasetVersion
    changed: bool

    def summary(self) -> dict[str, Any]:
        """What a registration or a pull answers: dataset, version, changed, rows, sha256."""
        v = self.version
        return {
            "dataset": v.dataset,
            "version": v.version,
            "changed": self.changed,
            "rows": v.rows,
            "sha256": v.sha256,
        }


def load_classification(path: Path) -> Classification:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClassificationError(f"classification file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassificationError(f"classification file '{path}' cannot be read: {exc}") from exc
    return parse_classification(text, f"classification file '{path}'")


def parse_classification(text: str, what: str = "the classification") -> Classification:
    """A classification from its YAML text, checked as ``dataset register`` checks a file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClassificationError(f"{what} is not valid YAML: {exc}") from exc
    return Classification.from_dict(data)


def _validate_name(name: str) -> None:
    if (
        not name
        or not name.replace("_", "").isalnum()
        or not name[0].isalpha()
        or not name.isascii()
    ):
        raise InputError(
            f"dataset name '{name}': use letters, digits and '_', starting with a letter "
            "(it is the table name operators write in SQL)"
        )


def _write_snapshot(
    platform: Platform,
    uri: str,
    classification: Classification,
    work: Path,
    progress: ProgressFn | None,
) -> tuple[Path, int, str, pa.Schema]:
    settings = platform.settings
    compression = settings.ingest.compression
    out = work / "snapshot.parquet"
    rows = 0
    with open_source(uri, batch_rows=settings.ingest.batch_rows) as source:
        schema = source.schema
        classification.check_against(schema.names)
        _check_format_types(classification, schema)
        writer = pq.ParquetWriter(
            out, schema, compression=None if compression == "none" else compression
        )
        try:
            for batch in _read_ahead(source.batches()):
                check_values(batch, classification)  # values inside their declared domains
                writer.write_batch(batch)
                rows += batch.num_rows
                if progress is not None:
                    done, total = _progress_of(source)
                    progress(rows, done, total)
        finally:
            writer.close()
        redacted = source.uri
    return out, rows, redacted, schema


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 4) -> Iterator[pa.RecordBatch]:
    """The source's batches, read up to ``depth`` ahead on a thread of their own.

    Parsing (the source) and encoding and compressing (the Parquet writer) both
    release the GIL, so on two cores they overlap instead of taking turns. A
    source error is raised here, as the same exception, at the batch it stopped
    at; when the consumer stops early (a full disk), the reader stops too.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))

    reader = threading.Thread(target=read, name="ingest-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        reader.join()


def _progress_of(source) -> tuple[int, int | None]:
    value = getattr(source, "progress", None)
    if value is None:
        return 0, None
    if isinstance(value, tuple):
        return int(value[0] or 0), value[1]
    done = getattr(value, "bytes_read", None) or getattr(value, "done", 0) or 0
    total = getattr(value, "total_bytes", None) or getattr(value, "total", None)
    return int(done), total


def _check_format_types(classification: Classification, schema: pa.Schema) -> None:
    """An ID declared with a format must be read as text: as a number it loses its
    leading zeros and its check character X, and every check would fail silently."""
    for column, fmt in classification.formats.items():
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ClassificationError(
                f"column '{column}' is declared {fmt} but the source yields {kind}; "
                f"read it as text (for a CSV source add ?text={column} to the URI)"
            )


def _latest_row(conn: Connection, dataset_id: int):
    return conn.execute(
        select(dataset_versions)
        .where(dataset_versions.c.dataset_id == dataset_id)
        .order_by(dataset_versions.c.version.desc())
        .limit(1)
    ).first()


def register(
    platform: Platform,
    provider: Principal,
    name: str,
    uri: str,
    classification: Classification,
    progress: ProgressFn | None = None,
) -> RegisterResult:
    """Register (or re-register) a dataset from a source; Art. 14."""
    require_role(provider, Role.PROVIDER, action="register datasets", article="Art. 14")
    _validate_name(name)
    # A Classification built in code skipped from_dict's checks (an unknown format
    # would surface as a KeyError from the profile); check it before any byte is written.
    classification = Classification.from_dict(classification.to_dict())
    with platform.store.read() as conn:
        existing = conn.execute(select(datasets).where(datasets.c.name == name)).first()
    if existing is not None and existing.provider_id != provider.id:
        raise Conflict(
            f"dataset '{name}' belongs to another provider; choose another name (Art. 18)",
            article="Art. 18",
        )
    work = platform.work_dir()
    try:
        snapshot, rows, redacted_uri, schema = _write_snapshot(
            platform, uri, classification, work, progress
        )
        sha = _sha256(snapshot)
        identity = {"sha256": sha, "classification": classification.to_dict()}
        if existing is not None:
            same = _unchanged(platform, provider, name, existing, sha, identity)
            if same is not None:
                keep_source(platform, name, uri)  # the source it is read again from
                return same
        relative = Path("vault") / sha[:2] / f"{sha}.parquet"
        target = platform.home / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        placed_now = not target.exists()
        intent = None
        if placed_now:
            intent = storage.intend(platform.home, relative)
            os.chmod(snapshot, 0o400)  # immutable: its name is its content's hash; the owner's only
            os.replace(snapshot, target)
            storage.fault_point("vault.placed")
        try:
            profile = profile_parquet(str(target), classification)
            size = target.stat().st_size
            with platform.store.transaction() as conn:
                if intent is not None:
                    storage.settle_on_commit(conn, intent)
                version = _insert_version(
                    platform, conn, provider, name, existing, classification,
                    _Snapshot(sha, relative, rows, size, schema, profile, redacted_uri),
                )  # fmt: skip
        except BaseException:
            if placed_now:
                _remove_if_unreferenced(platform, relative)
            raise
        with platform.store.read() as conn:
            registered = get_version(conn, platform, name, version)
        _number_entities(platform, registered)
        keep_source(platform, name, uri)  # the source it is read again from
        return RegisterResult(registered, changed=True)
    except Exception as exc:
        if storage.is_disk_full(exc):
            raise storage.disk_full(f"dataset '{name}'") from exc
        if isinstance(exc, SandboxError) or not isinstance(exc, OSError | pa.ArrowException):
            raise
        raise InputError(f"dataset '{name}' could not be ingested: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _number_entities(platform: Platform, version: DatasetVersion) -> None:
    """Number the version's entities now, so that no operator's first job waits for it
    (issue 25); a failure here leaves it to that first job, which numbers it again."""
    if not platform.settings.differencing.enabled:
        return
    from sandbox.guard.numbering import numbering_for

    try:
        numbering_for(platform, version.dataset, version)
    except Exception:  # the version is registered; its first job numbers it
        logging.getLogger("sandbox.data.vault").warning(
            "entity numbering of %s v%s deferred to its first job",
            version.dataset,
            version.version,
            exc_info=True,
        )


def _unchanged(platform, provider, name, existing, sha, identity) -> RegisterResult | None:
    """The same bytes and classification as the latest version: no new version, one
    ledger entry saying so."""
    with platform.store.read() as conn:
        latest = _latest_row(conn, existing.id)
    if (
        latest is None
        or latest.sha256 != sha
        or json.loads(latest.classification_json) != identity["classification"]
    ):
        return None
    with platform.store.transaction() as wconn:
        platform.record(
            wconn,
            provider.actor,
            "dataset.reregister_unchanged",
            f"dataset:{name}",
            {"version": latest.version, "sha256": sha},
            "Art. 14",
        )
    return RegisterResult(
        _version_from_row(platform, name, existing.provider_id, latest), changed=False
    )


@dataclass(frozen=True)
class _Snapshot:
    """A snapshot placed in the vault, as its version row records it."""

    sha: str
    relative: Path
    rows: int
    size: int
    schema: pa.Schema
    profile: dict
    source: str


def _insert_version(
    platform: Platform,
    conn,
    provider: Principal,
    name: str,
    existing,
    classification: Classification,
    snap: _Snapshot,
) -> int:
    """The dataset row (first registration) and its next version row, with the ledger
    entry ``dataset.register``, in the caller's transaction; returns the version."""
    if existing is None:
        # Checked again under the write lock: another provider may have taken the
        # name since the first look.
        taken = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        if taken is not None and taken.provider_id != provider.id:
            raise Conflict(
                f"dataset '{name}' belongs to another provider; choose another name (Art. 18)",
                article="Art. 18",
            )
        existing = taken
    dataset_id = existing.id if existing is not None else None
    if dataset_id is None:
        dataset_id = conn.execute(
            datasets.insert().values(name=name, provider_id=provider.id, created_at=now_utc())
        ).inserted_primary_key[0]
    latest = conn.execute(
        select(func.max(dataset_versions.c.version)).where(
            dataset_versions.c.dataset_id == dataset_id
        )
    ).scalar()
    version = (latest or 0) + 1
    conn.execute(
        dataset_versions.insert().values(
            dataset_id=dataset_id,
            version=version,
            sha256=snap.sha,
            path=str(snap.relative),
            rows=snap.rows,
            bytes=snap.size,
            schema_json=json.dumps(_schema_dict(snap.schema)),
            classification_json=json.dumps(classification.to_dict()),
            profile_json=json.dumps(snap.profile, default=str),
            source_uri=snap.source,
            created_at=now_utc(),
        )
    )
    platform.record(
        conn,
        provider.actor,
        "dataset.register",
        f"dataset:{name}",
        {
            "version": version,
            "sha256": snap.sha,
            "rows": snap.rows,
            "bytes": snap.size,
            "source": snap.source,
        },
        "Art. 14",
    )
    return version


def _remove_if_unreferenced(platform: Platform, relative: Path) -> None:
    with platform.store.read() as conn:
        used = conn.execute(
            select(dataset_versions.c.id).where(dataset_versions.c.path == str(relative))
        ).first()
    if used is None:
        (platform.home / relative).unlink(missing_ok=True)


def _schema_dict(schema: pa.Schema) -> dict:
    return {field.name: str(field.type) for field in schema}


def _version_from_row(platform: Platform, name: str, provider_id: int, row) -> DatasetVersion:
    return DatasetVersion(
        dataset=name,
        dataset_id=row.dataset_id,
        version=row.version,
        sha256=row.sha256,
        path=platform.home / row.path,
        rows=row.rows,
        bytes=row.bytes,
        classification=Classification.from_dict(json.loads(row.classification_json)),
        profile=json.loads(row.profile_json),
        provider_id=provider_id,
        created_at=row.created_at,
    )


def get_version(
    conn: Connection, platform: Platform, name: str, version: int | None = None
) -> DatasetVersion:
    ds = conn.execute(select(datasets).where(datasets.c.name == name)).first()
    if ds is None:
        known = [r.name for r in conn.execute(select(datasets.c.name))]
        raise NotFound(f"no dataset named '{name}'; " + did_you_mean(name, known or ["(none)"]))
    stmt = select(dataset_versions).where(dataset_versions.c.dataset_id == ds.id)
    if version is None:
        stmt = stmt.order_by(dataset_versions.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(dataset_versions.c.version == version)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"dataset '{name}' has no version {version}")
    return _version_from_row(platform, name, ds.provider_id, row)


def list_datasets(conn: Connection) -> list[dict]:
    latest = (
        select(dataset_versions.c.dataset_id, func.max(dataset_versions.c.version).label("v"))
        .group_by(dataset_versions.c.dataset_id)
        .subquery()
    )
    stmt = (
        select(
            datasets.c.name,
            datasets.c.provider_id,
            dataset_versions.c.version,
            dataset_versions.c.rows,
            dataset_versions.c.bytes,
            dataset_versions.c.sha256,
            dataset_versions.c.created_at,
        )
        .join(latest, latest.c.dataset_id == datasets.c.id)
        .join(
            dataset_versions,
            (dataset_versions.c.dataset_id == datasets.c.id)
            & (dataset_versions.c.version == latest.c.v),
        )
        .order_by(datasets.c.name)
    )
    return [dict(r) for r in conn.execute(stmt).mappings()]
