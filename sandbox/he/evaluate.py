"""The encrypted evaluation: the group sums computed in ``he.processes`` worker
processes (``python -m sandbox.he.evaluate``: rlimits, no network), or as Ray tasks
when ``ray.address`` is set; the answer is one ciphertext with group g's total in
slot g (the layout is explained in :mod:`sandbox.he.service`, the arithmetic of a
share in :mod:`sandbox.he.share`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jobs.he_aggregate import Scheme
from policies.errors import InputError, JobFailed
from sandbox.he.share import Loaded, evaluate_share, lane_width

__all__ = ["Evaluation", "evaluate", "evaluate_share", "lane_width", "ray_share"]


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    env.update(
        HOME="/nonexistent",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
    )
    return env


def evaluate(
    work: Path,
    context: bytes | memoryview,
    ciphertexts: Sequence[bytes | memoryview],
    labels: np.ndarray,
    n_groups: int,
    scheme: Scheme,
    processes: int,
    time_limit_s: float,
    memory_mb: int,
    ray_address: str = "",
) -> tuple[bytes | None, dict]:
    """Run the shares in worker processes and add their answers; returns (answer, timings).

    With ``ray_address`` (the ``ray.address`` setting) the shares are Ray tasks instead."""
    with Evaluation(
        work, context, ciphertexts, scheme, processes, time_limit_s, memory_mb, ray_address
    ) as evaluation:
        return evaluation.run(labels, n_groups)


class Evaluation:
    """The encrypted sums of one request, started before its keys are joined.

    The workers start at once: each loads the operator's context, reads and checks its
    ciphertexts and pairs them (:class:`sandbox.he.share.Loaded`), then waits for its
    share of the rotation amounts; the platform meanwhile joins the keys to the groups.
    :meth:`run` hands them the labels and adds their answers; leaving the ``with``
    block ends any worker still running (the request was refused or failed). With
    ``ray_address`` nothing starts early: :meth:`run` sends the shares to Ray."""

    def __init__(
        self,
        work: Path,
        context: bytes | memoryview,
        ciphertexts: Sequence[bytes | memoryview],
        scheme: Scheme,
        processes: int,
        time_limit_s: float,
        memory_mb: int,
        ray_address: str = "",
        loaded: Any = None,
    ) -> None:
        """``loaded``: the context as the caller's checks read it (TenSEAL), used to add
        the shares instead of reading its 30 MB again."""
        self.work, self.context, self.ciphertexts = work, context, ciphertexts
        self.loaded = loaded
        self.scheme, self.processes, self.time_limit_s = scheme, processes, time_limit_s
        self.ray_address = ray_address
        self.timings: dict[str, float] = {}
        self.procs: list[subprocess.Popen] = []
        if ray_address:
            return
        started = time.perf_counter()
        (work / "context.bin").write_bytes(bytes(context))
        offsets = []
        with open(work / "ciphertexts.bin", "wb") as fh:
            for blob in ciphertexts:
                offsets.append((fh.tell(), len(blob)))
                fh.write(blob)
        task = {
            "scheme": scheme.value,
            "offsets": offsets,
            "cpu_s": int(time_limit_s) + 1,
            "memory_mb": memory_mb,
        }
        self.procs = [_start_worker(work, task) for _ in range(max(1, processes))]
        self.timings["prepare_s"] = time.perf_counter() - started

    def __enter__(self) -> Evaluation:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """End every worker that has not ended."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def run(self, labels: np.ndarray, n_groups: int) -> tuple[bytes | None, dict]:
        """The answer for these labels (list entry i adds to answer slot ``labels[i]``,
        -1 to none) and ``n_groups`` answer slots; None when there is no group."""
        timings = self.timings
        if n_groups == 0:
            self.close()
            return None, timings
        started = time.perf_counter()
        width = lane_width(n_groups)
        count = max(1, min(self.processes, width))
        shares = [(round(width * p / count), round(width * (p + 1) / count)) for p in range(count)]
        if self.ray_address:  # issue 9
            statuses = _on_ray(
                self.work,
                self.context,
                self.ciphertexts,
                labels,
                shares,
                width,
                self.scheme,
                self.ray_address,
            )
        else:
            np.save(self.work / "labels.npy", labels)
            for p, proc in enumerate(self.procs):
                share = {"shifts": list(shares[p]), "width": width} if p < count else {}
                _send(proc, {**share, "out": f"share-{p}.bin"})
            statuses = _collect(self.procs, self.time_limit_s)
            for phase in ("load_s", "wait_s", "masks_s", "fold_s"):
                timings[f"worker_{phase}"] = max(
                    s.get("timings", {}).get(phase, 0.0) for s in statuses
                )
        timings["evaluate_s"] = time.perf_counter() - started
        return _add_shares(self.work, self.context, statuses, timings, self.loaded)


def _on_ray(work, context, ciphertexts, labels, shares, width, scheme, ray_address) -> list[dict]:
    """The shares as Ray tasks; each answer is written where a worker would write it."""
    from sandbox.run.engines.ray_pool import ray_map

    blobs, context = [bytes(b) for b in ciphertexts], bytes(context)
    # the same objects in every call: put in Ray's object store once (ray_map)
    calls = [(context, blobs, labels, share, width, scheme.value) for share in shares]
    answers = ray_map(ray_share, calls, ray_address, what="the encrypted group sums")
    statuses = []
    for p, answer in enumerate(answers):
        if answer is not None:
            (work / f"share-{p}.bin").write_bytes(answer)
        statuses.append({"ok": True, "saved": answer is not None})
    return statuses


def _start_worker(work: Path, task: dict) -> subprocess.Popen:
    """One limited worker process (``python -m sandbox.he.evaluate``): it loads the
    ciphertexts now and reads its share from :func:`_send` later."""
    proc = subprocess.Popen(
        [sys.executable, "-s", "-m", "sandbox.he.evaluate"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=work,
        env=_worker_env(),
        start_new_session=True,
        text=True,
    )
    assert proc.stdin is not None  # opened with stdin=PIPE
    proc.stdin.write(json.dumps(task) + "\n")
    proc.stdin.flush()
    return proc


def _send(proc: subprocess.Popen, share: dict) -> None:
    """A worker's share (``shifts``, ``width``, ``out``; none: nothing to do). A worker
    that already ended (a ciphertext it refused) says why in its status."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(share) + "\n")
        proc.stdin.flush()  # closed by communicate()
    except OSError:
        pass


def _collect(procs: list[subprocess.Popen], time_limit_s: float) -> list[dict]:
    """Every worker's status within the time limit; a late, dead or failed worker fails
    the request (a refused ciphertext is the operator's input error)."""
    deadline = time.monotonic() + time_limit_s
    statuses = []
    try:
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise JobFailed(
                    f"the encrypted sums exceeded the time limit of {time_limit_s:g} s "
                    "(setting job.time_limit_s)",
                    code="time_limit",
                ) from None
            statuses.append(_status(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    answers: list[dict] = []
    for status in statuses:
        if status is None:
            raise JobFailed("an HE worker ended without an answer", code="worker_died")
        if not status.get("ok"):
            if status.get("error") == "input":
                raise InputError(status.get("message", "a ciphertext was refused"))
            raise JobFailed(
                f"an HE worker failed ({status.get('error', 'unknown')})", code="engine_error"
            )
        answers.append(status)
    return answers


def _add_shares(
    work: Path, context: bytes | memoryview, statuses: list[dict], timings: dict, loaded: Any
) -> tuple[bytes | None, dict]:
    """The answer: the sum of the saved shares ``work/share-<p>.bin``."""
    import tenseal as ts
    import tenseal.sealapi as sa

    ctx = loaded if loaded is not None else ts.context_from(bytes(context))
    seal = ctx.seal_context().data
    evaluator = sa.Evaluator(seal)
    answer = None
    for p, status in enumerate(statuses):
        if not status.get("saved"):
            continue
        part = sa.Ciphertext()
        part.load(seal, str(work / f"share-{p}.bin"))
        if answer is None:
            answer = part
        else:
            evaluator.add_inplace(answer, part)
    if answer is None:
        return None, timings
    answer.save(str(work / "answer.bin"))
    return (work / "answer.bin").read_bytes(), timings


def _status(out: str) -> dict | None:
    for line in reversed((out or "").strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def _worker_main() -> None:
    """``python -m sandbox.he.evaluate``: load and check the ciphertexts, then compute
    the share read from the second line of stdin, in its own limited process."""
    from sandbox.run.isolation import apply_limits, leave_network

    task = json.loads(sys.stdin.readline())
    apply_limits(task["cpu_s"], task["memory_mb"], 1024)
    leave_network()
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        loaded = Loaded.of(
            Path("context.bin").read_bytes(), _blobs(task["offsets"]), Scheme(task["scheme"])
        )
        timings["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        line = sys.stdin.readline()
        timings["wait_s"] = time.perf_counter() - t
        share = json.loads(line) if line.strip() else {}
        saved = False
        if "shifts" in share:
            saved = loaded.share(
                np.load("labels.npy"),
                tuple(share["shifts"]),
                share["width"],
                Path(share["out"]),
                timings,
            )
        print(json.dumps({"ok": True, "saved": saved, "timings": timings}), flush=True)
    except InputError as exc:
        print(json.dumps({"ok": False, "error": "input", "message": exc.message}), flush=True)
    except MemoryError:
        print(json.dumps({"ok": False, "error": "memory_limit"}), flush=True)
    except Exception as exc:  # the kind only: engine messages never travel back verbatim
        print(json.dumps({"ok": False, "error": type(exc).__name__}), flush=True)


def _blobs(offsets: list) -> Iterator[bytes]:
    """The ciphertexts of ``ciphertexts.bin``, one at a time."""
    with open("ciphertexts.bin", "rb") as fh:
        for offset, size in offsets:
            fh.seek(offset)
            yield fh.read(size)


def ray_share(
    context: bytes,
    ciphertexts: list[bytes],
    labels,
    shifts: tuple[int, int],
    width: int,
    scheme_value: str,
) -> bytes | None:
    """One share as a Ray task (``ray.address`` set): :func:`evaluate_share`, returning
    the saved ciphertext's bytes (None if the share held no value) instead of a file."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "share.bin"
        saved = evaluate_share(
            context, ciphertexts, labels, shifts, width, Scheme(scheme_value), out
        )
        return out.read_bytes() if saved else None


if __name__ == "__main__":
    _worker_main()
