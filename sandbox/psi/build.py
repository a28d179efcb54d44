"""Building a setup in processes: the tasks, the process pool, the merge of RAW parts.

Issue 23 measured where a cold build's time went around the library and removed it:

* the build processes start (spawn, and import the PSI library) while the platform is
  still reading its column (:func:`build_pool`), not after;
* a RAW part is encrypted in many small tasks (:func:`plan_tasks`) that the processes
  take as they free up, so both stay busy to the end instead of one waiting for the
  other's half; every task is under the one key, and the merge sorts, so the bytes are
  those of one call over the whole part;
* the parts come back as the library's own serialised bytes, and RAW ones are merged
  by their fixed-size records (:func:`merge_raw`), without a protobuf message per
  element. A GCS or Bloom-filter shard stays a part of its own, as before: one per
  process, or one per group.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context

import numpy as np

from policies.errors import JobFailed
from sandbox.psi.worker import encrypt_items, encrypt_shard, merge_raw_messages, ready, start_build

TASKS_PER_PROCESS = 32  # a process's share of a RAW part, in tasks: a short tail
MIN_TASK_ITEMS = 1_000  # below this a task's overhead (pickling, a message) shows

Call = tuple[float, int, str, list[str]]  # encrypt_items's arguments; the key apart


@contextmanager
def build_pool(processes: int, key: bytes, what: str) -> Iterator[ProcessPoolExecutor | None]:
    """``processes`` spawned build processes under ``key``, started now; None for one.

    Spawn, not fork: the server is threaded, and a forked copy of a threaded process may
    hold locks it can never release. The worker module imports only the PSI library."""
    if processes <= 1:
        yield None
        return
    try:
        pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=get_context("spawn"),
            initializer=start_build,
            initargs=(key,),
        )
        for _ in range(processes):  # each submit starts one process, now
            pool.submit(ready)
    except (OSError, RuntimeError) as exc:
        raise _failed(what, processes) from exc
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _failed(what: str, processes: int) -> JobFailed:
    return JobFailed(
        f"{what} could not be built in {processes} processes (setting psi.build_processes)"
    )


def task_items(total: int, processes: int) -> int:
    """Items per task of a RAW part: about :data:`TASKS_PER_PROCESS` tasks per process, at
    least :data:`MIN_TASK_ITEMS` each, and never fewer tasks than processes."""
    share = math.ceil(total / (processes * TASKS_PER_PROCESS))
    return max(1, min(math.ceil(total / processes), max(MIN_TASK_ITEMS, share)))


def plan_tasks(
    parts: Sequence[list[str]], structure: str, size: int
) -> list[tuple[int, list[str]]]:
    """(part, items) of every task: a RAW part in tasks of ``size`` items (merged after),
    any other part as one task (its bytes are the part)."""
    tasks = []
    for index, items in enumerate(parts):
        step = size if structure == "raw" and items else max(1, len(items))
        tasks += [(index, items[at : at + step]) for at in range(0, max(1, len(items)), step)]
    return tasks


def run_calls(
    key: bytes,
    calls: Sequence[Call],
    pool: ProcessPoolExecutor | None,
    *,
    processes: int,
    ray_address: str,
    what: str,
) -> list[bytes]:
    """``encrypt_shard(key, *call)`` of every call, in call order: on the pool of
    ``processes`` under ``key`` (the largest calls first), as Ray tasks with
    ``ray_address``, or here."""
    if ray_address and len(calls) > 1:  # issue 9: the tasks as Ray tasks
        from sandbox.run.engines.ray_pool import ray_map

        return ray_map(encrypt_shard, [(key, *call) for call in calls], ray_address, what=what)
    if pool is None or len(calls) <= 1:
        return [encrypt_shard(key, *call) for call in calls]
    order = sorted(range(len(calls)), key=lambda i: -len(calls[i][3]))
    try:
        futures = {i: pool.submit(encrypt_items, *calls[i]) for i in order}
        return [futures[i].result() for i in range(len(calls))]
    except (BrokenProcessPool, OSError, RuntimeError) as exc:
        raise _failed(what, processes) from exc


# --- merging RAW parts -------------------------------------------------------------------------

_SETUP_RAW = 0x0A  # ServerSetup.raw: field 1, length-delimited
_ELEMENT = (0x0A, 0x21)  # RawInfo.encrypted_elements: field 1, 33 bytes (a compressed point)
RECORD = 2 + 33


def _raw_body(blob: bytes) -> bytes | None:
    """The RawInfo of a serialised RAW ServerSetup as the library writes it, or None."""
    if len(blob) < 2 or blob[0] != _SETUP_RAW:
        return None
    size, shift, at = 0, 0, 1
    while at < len(blob) and shift < 64:
        byte = blob[at]
        size |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return blob[at:] if at + size == len(blob) and size % RECORD == 0 else None
    return None


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def merge_raw(parts: Sequence[bytes]) -> bytes:
    """One RAW ServerSetup holding the encrypted elements of every RAW part, sorted
    (the order the library itself gives, so nothing about the shards shows).

    Every element the library writes is a 33-byte point, so a part is a run of 35-byte
    records (tag, length, point) and the merged message is the records sorted, framed
    once: the bytes protobuf would write for the merged message. Anything else goes the
    general way (:func:`sandbox.psi.worker.merge_raw_messages`)."""
    bodies = [body for blob in parts if (body := _raw_body(blob)) is not None]
    if len(bodies) != len(parts):
        return merge_raw_messages(list(parts))
    rows = np.frombuffer(b"".join(bodies), dtype=np.uint8).reshape(-1, RECORD)
    if not (np.all(rows[:, 0] == _ELEMENT[0]) and np.all(rows[:, 1] == _ELEMENT[1])):
        return merge_raw_messages(list(parts))
    # Sort by the element's first 8 bytes (big-endian); only ties need the whole element.
    keys = rows[:, 2:10].copy().view(">u8").ravel()
    order = np.argsort(keys, kind="stable")
    if np.any(keys[order][1:] == keys[order][:-1]):
        order = np.argsort(rows.view(f"S{RECORD}").ravel(), kind="stable")
    body = rows[order].tobytes()
    return bytes([_SETUP_RAW]) + _varint(len(body)) + body
