"""Backups of a platform home, and restoring one into an empty home.

A backup is one folder::

    store.sqlite     a consistent copy made with SQLite's online backup API
                     (the server may keep writing meanwhile)
    keys/            the signing key and every other key file (mode 0600)
    vault/           every snapshot the copied store references
    products/        every product the copied store records, but those deleted by a
                     disposal clause (Art. 13): their rows stay, their folders are gone
    held/            the checked outputs of withheld jobs
    other/           anything else of the home but tmp/ (caches, indexes), as is; but
                     run/ledger-head.json is the head of the copied store, not the home's
    backup.json      every file with its SHA-256 and size, the ledger head
    backup.sig       the platform's signature over backup.json

The store is copied first; what it references decides which files belong, so
a snapshot or product placed after the copy (its row is not in the copy) is
left out, and the backup is consistent. Each snapshot is checked against the
SHA-256 its version recorded, each product against its signed manifest, so a
damaged file is found when the backup is made, not when it is needed. The
folder is built beside ``DIR`` and renamed into place: there is never a half
backup at ``DIR``.

:func:`restore` refuses a home that is not empty, checks every file of the
backup against ``backup.json`` and its signature, copies it in, opens the
platform and verifies the ledger, every product and every snapshot
(:func:`verify_home`); if anything fails, the half-restored home is removed.
Secrets travel in the backup (the key signs the ledger): keep backups where
the platform home is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from policies.errors import ConfigError, IntegrityError
from policies.workflow import Disposal
from sandbox.core import keys, ledger
from sandbox.core.ledger import now_utc
from sandbox.core.platform import STORE_NAME, Platform
from sandbox.core.storage import sha256_file as _sha256
from sandbox.core.store import dataset_versions, jobs, products
from sandbox.data.release import verify_product
from sandbox.registry.disposal import deleted_products
from sandbox.registry.tables import product_dispositions

MANIFEST = "backup.json"
SIGNATURE = "backup.sig"
FORMAT = 1
SKIP_TOP = {STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", "tmp"}
OWN_TOP = {"keys", "vault", "products", "held"}
# A product deleted by a disposal clause keeps its row (lineage, ledger) but has no folder.
LIVE_PRODUCTS = (
    f"SELECT path FROM {products.name} WHERE id NOT IN (SELECT product_id FROM "
    f"{product_dispositions.name} WHERE action = '{Disposal.DELETE.value}')"
)


@dataclass(frozen=True)
class BackupReport:
    folder: Path
    files: int
    bytes: int
    ledger_entries: int
    datasets: int
    products: int


@dataclass(frozen=True)
class HomeCheck:
    ledger_entries: int
    snapshots: int
    products: int


def _require_empty(folder: Path, what: str) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{what} '{folder}' is not empty; name a new or empty folder")


def _copy_store(source: Path, target: Path) -> None:
    """SQLite's online backup: one consistent copy while other connections write."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _copy(src: Path, dst: Path, ignore=None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, ignore=ignore)
    else:
        shutil.copy2(src, dst)


def _not_the_head_copy(folder: str, names: list[str]) -> set[str]:
    """The home's copy of the ledger head may be newer than the store copied before it:
    the backup carries a copy of the head of *its* store instead (written below)."""
    if Path(folder).name != ledger.HEAD_COPY.parent.name:
        return set()
    return {n for n in names if n.startswith(ledger.HEAD_COPY.name) or n == ledger.HEAD_LOCK}


def _referenced(store_copy: Path) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    conn = sqlite3.connect(store_copy)
    try:
        snaps = list(conn.execute(f"SELECT DISTINCT path, sha256 FROM {dataset_versions.name}"))
        prods = [r[0] for r in conn.execute(LIVE_PRODUCTS)]
        held = [r[0] for r in conn.execute(f"SELECT id FROM {jobs.name} WHERE status = 'withheld'")]
    finally:
        conn.close()
    return snaps, prods, held


def backup(platform: Platform, dest: Path) -> BackupReport:
    """Write a consistent backup of ``platform`` to the new or empty folder ``dest``."""
    if platform.store.is_postgres:
        raise ConfigError(
            "the store is PostgreSQL (setting store.url): back it up with pg_dump, then copy "
            "the shared folder (keys, vault, products); see docs/deploy.md"
        )
    dest = Path(dest).resolve()
    _require_empty(dest, "backup folder")
    home = platform.home.resolve()
    if dest == home or home in dest.parents:
        raise ConfigError("the backup folder must lie outside the platform home")
    stage = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, mode=0o700)
    try:
        _copy_store(home / STORE_NAME, stage / STORE_NAME)
        snaps, prods, held = _referenced(stage / STORE_NAME)
        for relative, sha in snaps:
            if _sha256(home / relative) != sha:
                raise IntegrityError(f"snapshot {relative} no longer matches its SHA-256")
            _copy(home / relative, stage / relative)
        public = platform.key.public_key()
        for relative in prods:
            verify_product(home / relative, public)
            _copy(home / relative, stage / relative)
        for job_id in held:
            for suffix in ("parquet", "json"):
                name = Path("held") / f"job-{job_id:06d}.{suffix}"
                if (home / name).exists():
                    _copy(home / name, stage / name)
        _copy(home / "keys", stage / "keys")
        for child in home.iterdir():
            if child.name not in SKIP_TOP | OWN_TOP:
                _copy(child, stage / "other" / child.name, ignore=_not_the_head_copy)
        with sqlite3.connect(stage / STORE_NAME) as conn:
            head = conn.execute(
                "SELECT seq, hash, signature, ts FROM ledger_head WHERE id = 1"
            ).fetchone()
        if head:
            copy = stage / "other" / ledger.HEAD_COPY
            ledger.write_head_copy(
                copy, dict(zip(("seq", "hash", "signature", "ts"), head, strict=True))
            )
            (copy.parent / ledger.HEAD_LOCK).unlink(missing_ok=True)
        files = _inventory(stage)
        manifest = {
            "format": FORMAT,
            "created_at": now_utc(),
            "ledger_head": {"seq": head[0], "hash": head[1]} if head else None,
            "files": files,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        (stage / MANIFEST).write_bytes(body)
        (stage / SIGNATURE).write_text(keys.sign(platform.key, body) + "\n")
        if dest.exists():
            dest.rmdir()
        os.replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return BackupReport(
        folder=dest,
        files=len(files),
        bytes=sum(f["bytes"] for f in files.values()),
        ledger_entries=head[0] if head else 0,
        datasets=len(snaps),
        products=len(prods),
    )


def _inventory(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (MANIFEST, SIGNATURE):
            rel = path.relative_to(folder).as_posix()
            out[rel] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    return out


def check_backup(folder: Path) -> dict:
    """Check ``backup.json``'s signature (by the key inside) and every file; return it."""
    folder = Path(folder)
    try:
        body = (folder / MANIFEST).read_bytes()
        signature = (folder / SIGNATURE).read_text().strip()
    except FileNotFoundError as exc:
        raise IntegrityError(f"backup: {Path(exc.filename).name} is missing") from None
    public = keys.load_private(folder / "keys").public_key()
    keys.verify(public, body, signature, f"backup: {MANIFEST}")
    manifest = json.loads(body)
    for rel, meta in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            raise IntegrityError(f"backup: file {rel} is missing")
        if _sha256(path) != meta["sha256"]:
            raise IntegrityError(f"backup: file {rel} was changed after the backup was made")
    return manifest


def verify_home(platform: Platform) -> HomeCheck:
    """The ledger chain and its signed head, every product, every snapshot's SHA-256."""
    public = platform.key.public_key()
    with platform.store.read() as conn:
        report = ledger.verify(conn, public)
        snaps = conn.execute(select(dataset_versions.c.path, dataset_versions.c.sha256)).all()
        gone = deleted_products(conn)
        prods = [
            r.path for r in conn.execute(select(products.c.id, products.c.path)) if r.id not in gone
        ]
    for relative, sha in {(r.path, r.sha256) for r in snaps}:
        path = platform.home / relative
        if not path.is_file() or _sha256(path) != sha:
            raise IntegrityError(f"snapshot {relative} is missing or does not match its SHA-256")
    for relative in prods:
        verify_product(platform.home / relative, public)
    return HomeCheck(report.entries, len({r.path for r in snaps}), len(prods))


def restore(source: Path, home: Path) -> HomeCheck:
    """Restore the backup ``source`` into the new or empty ``home``, then verify it."""
    source, home = Path(source).resolve(), Path(home).resolve()
    _require_empty(home, "platform home")
    manifest = check_backup(source)
    stage = home.parent / f".{home.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, mode=0o700)
    try:
        for rel in manifest["files"]:
            target = stage / (rel[len("other/") :] if rel.startswith("other/") else rel)
            _copy(source / rel, target)
        os.chmod(stage / "keys", 0o700)
        for key_file in (stage / "keys").rglob("*"):
            if key_file.is_file() and key_file.name != keys.PUBLIC_NAME:
                os.chmod(key_file, 0o600)
        for sub in ("vault", "products", "tmp"):
            (stage / sub).mkdir(exist_ok=True)
        if home.exists():
            home.rmdir()
        os.replace(stage, home)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        platform = Platform.open(home)
        try:
            check = verify_home(platform)
            head = manifest.get("ledger_head")
            if head and check.ledger_entries != head["seq"]:
                raise IntegrityError(
                    f"the restored ledger has {check.ledger_entries} entries; "
                    f"the backup recorded {head['seq']}"
                )
            with platform.store.transaction() as conn:
                platform.record(
                    conn,
                    ledger.SYSTEM,
                    "platform.restore",
                    "platform",
                    {"backup_created_at": manifest["created_at"], "ledger_head": head},
                    "Art. 8",
                )
        finally:
            platform.close()
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return check
