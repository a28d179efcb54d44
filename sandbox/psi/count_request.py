"""The platform's request of a PSI count session: its column's values (one per person,
normalised as the operator's list is, with the group of each when asked) encrypted under
the session's key, shuffled, built in processes for a large column
(:mod:`sandbox.psi.counts`)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import private_set_intersection.python as psi_lib
import pyarrow.parquet as pq

from connectors.normalise import normalise
from policies.errors import (
    JobFailed,
    PolicyRefusal,
)
from sandbox.core.platform import Platform
from sandbox.data.vault import DatasetVersion
from sandbox.psi.setup import shards_of
from sandbox.psi.worker import encrypt_request_shard

ARTICLE = "Art. 15"


def column_items(
    version: DatasetVersion, column: str, group_by: str | None, groups: tuple[str, ...] | None
) -> tuple[list[str], list[int]]:
    """The distinct normalised items of the column, each with its group's position in the
    declared codes (-1: no group asked, or a value outside the declaration). An item that
    lies in two declared groups would move two counts: refused (fail closed), decided on
    the platform's data alone, whatever the operator's list."""
    names = [column] + ([group_by] if group_by else [])
    table = pq.read_table(version.path, columns=names)
    values = table.column(column).to_pylist()
    labels = table.column(group_by).to_pylist() if group_by else [None] * len(values)
    index = {code: i for i, code in enumerate(groups or ())}
    seen: dict[str, int] = {}
    for value, label in zip(values, labels, strict=True):
        if value is None or not (text := normalise(value)):
            continue
        at = index.get(str(label), -1) if label is not None else -1
        before = seen.setdefault(text, at)
        if before != at and -1 not in (before, at):
            raise PolicyRefusal(
                "dp_contributions",
                f"an item of '{column}' lies in more than one group of '{group_by}', so one "
                "person would move two counts; nothing is computed and nothing is spent",
                article=ARTICLE,
                subject=group_by,
                hint="group by a column that is fixed for each item",
            )
        if before == -1 and at != -1:
            seen[text] = at
    return list(seen), list(seen.values())


PARALLEL_FROM = 20_000  # items of the column from which the request is built in processes


def encrypt_column(platform: Platform, key: bytes, reveal: bool, items: list[str]) -> bytes:
    """The platform's request: ``items`` encrypted under the session key, in order; in
    ``psi.build_processes`` processes (shards under the one key) for a large column."""
    processes = platform.settings.psi.build_processes
    if processes <= 1 or len(items) < PARALLEL_FROM:
        return encrypt_request_shard(key, reveal, items)
    shards = shards_of(items, processes)
    try:
        with ProcessPoolExecutor(max_workers=len(shards), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(encrypt_request_shard, key, reveal, s) for s in shards]
            blobs = [f.result() for f in futures]
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        raise JobFailed(
            f"the PSI count request could not be built in {processes} processes "
            "(setting psi.build_processes)"
        ) from exc
    merged = psi_lib.Request()
    merged.reveal_intersection = reveal
    for blob in blobs:
        part = psi_lib.Request()
        part.ParseFromString(blob)
        merged.encrypted_elements.extend(part.encrypted_elements)
    return merged.SerializeToString()
