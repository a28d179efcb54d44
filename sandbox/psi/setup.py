"""The platform's half of a PSI match, prepared once per dataset version and column:
the column's own key (kept under keys/psi/), and the cached server setup every
session of that version sends (built in worker processes, or as Ray tasks)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import private_set_intersection.python as psi_lib

from jobs.psi_match import (
    BundleKind,
    pack_parts,
)
from policies.errors import InputError
from policies.psi import offered_groups as _offered
from sandbox.core.ledger import SYSTEM
from sandbox.core.platform import Platform
from sandbox.data.vault import DatasetVersion
from sandbox.psi.build import build_pool, merge_raw, plan_tasks, run_calls, task_items
from sandbox.psi.column import distinct_items, distinct_items_by_group

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
    county: str | None = None  # a county agreement's slice of the version (Art. 5)

    @property
    def name(self) -> str:
        group = f"{self.group_by}>={self.threshold}" if self.group_by else ""
        parts = f"{self.column}|{group}|{self.structure}|{self.fpr:g}|{self.capacity}"
        return _slug(parts + (f"|county={self.county}" if self.county else ""))


@dataclass(frozen=True)
class SetupInfo:
    path: Path
    etag: str
    meta: dict


def version_dir(home: Path, dataset: str, version: int) -> Path:
    return home / "psi" / dataset / f"v{version}"


def shards_of(items: list[str], count: int) -> list[list[str]]:
    count = max(1, min(count, len(items)))
    size, extra = divmod(len(items), count)
    out, at = [], 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        out.append(items[at : at + step])
        at += step
    return out


def _parts_of(
    spec: SetupSpec, snapshot: Path, processes: int
) -> tuple[BundleKind, list[str], list[list[str]], dict[str, Any]]:
    """The bundle's kind, its parts' labels and items, and what they are made of."""
    if spec.group_by is None:
        items = distinct_items(snapshot, spec.column)
        # A GCS or Bloom-filter shard stays a part of its own: one per process.
        shards = [items] if spec.structure == "raw" or not items else shards_of(items, processes)
        return BundleKind.SHARDS, [""] * len(shards), shards, {"items": len(items)}
    groups = distinct_items_by_group(snapshot, spec.column, spec.group_by)
    sizes = {g: len(v) for g, v in groups.items()}
    offered = _offered(sizes, spec.threshold)
    meta = {
        "items": sum(sizes[g] for g in offered),
        "groups_offered": len(offered),
        "groups_withheld": len(sizes) - len(offered),
    }
    return BundleKind.GROUPS, offered, [groups[g] for g in offered], meta


def _encrypt_parts(
    key: bytes,
    spec: SetupSpec,
    parts: list[list[str]],
    pool: ProcessPoolExecutor | None,
    processes: int,
    ray_address: str,
) -> list[list[bytes]]:
    """The serialised setups of every part's tasks (:func:`plan_tasks`): a RAW part in
    small tasks on the build processes, in ``processes`` shards as Ray tasks (fewer,
    larger tasks: each costs more there); any other part, or any part here, in one."""
    total = sum(map(len, parts))
    if pool is not None:
        size = task_items(total, processes)
    elif ray_address:
        size = max(1, -(-total // processes))
    else:
        size = max(1, max(map(len, parts), default=1))
    tasks = plan_tasks(parts, spec.structure, size)
    calls = [(spec.fpr, spec.capacity, spec.structure, items) for _, items in tasks]
    what = f"the PSI setup of '{spec.dataset}'"
    blobs = run_calls(key, calls, pool, processes=processes, ray_address=ray_address, what=what)
    pieces: list[list[bytes]] = [[] for _ in parts]
    for (index, _), blob in zip(tasks, blobs, strict=True):
        pieces[index].append(blob)
    return pieces


def build_bundle(
    key: bytes, spec: SetupSpec, snapshot: Path, processes: int, ray_address: str = ""
) -> tuple[bytes, dict]:
    """The setup bundle of a spec and what it is made of (sizes, never items).

    With ``ray_address`` (the ``ray.address`` setting) the tasks are Ray tasks; else the
    build processes start before the column is read, so their start overlaps it."""
    started = time.perf_counter()
    local = 1 if ray_address else processes
    with build_pool(local, key, f"the PSI setup of '{spec.dataset}'") as pool:
        kind, labels, parts, meta = _parts_of(spec, snapshot, processes)
        read_s = time.perf_counter() - started
        pieces = _encrypt_parts(key, spec, parts, pool, processes, ray_address)
    encrypt_s = time.perf_counter() - started - read_s
    # A RAW part in several tasks is merged; one task's bytes are the library's own.
    blobs = [merge_raw(p) if len(p) > 1 else p[0] for p in pieces]
    bundle = pack_parts(kind, list(zip(labels, blobs, strict=True)))
    meta.update(
        parts=len(parts),
        tasks=sum(map(len, pieces)),
        bytes=len(bundle),
        read_s=round(read_s, 3),
        encrypt_s=round(encrypt_s, 3),
        merge_s=round(time.perf_counter() - started - read_s - encrypt_s, 3),
        build_s=round(time.perf_counter() - started, 3),
        processes=processes,
        sha256=hashlib.sha256(bundle).hexdigest(),
    )
    return bundle, meta


def ensure_setup(
    platform: Platform, version: DatasetVersion, spec: SetupSpec
) -> tuple[SetupInfo, bool]:
    """The cached bundle of ``spec``, built now if missing; (info, built_now)."""
    folder = version_dir(platform.home, spec.dataset, spec.version)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.bundle"
    meta_path = folder / f"{spec.name}.json"
    with open(folder / f"{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            return SetupInfo(path, setup_etag(meta), meta), False
        key = column_key(platform.home, spec.dataset, spec.version, spec.column)
        processes = platform.settings.psi.build_processes
        ray_address = platform.settings.ray.address
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
    return SetupInfo(path, setup_etag(meta), meta), True


def setup_etag(meta: dict) -> str:
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
