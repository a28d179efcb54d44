"""The isolated runner: hands one task to a fresh worker process and watches it.

The platform process never executes job SQL itself. For each job the runner
takes a worker (a pre-started spare when one is ready, else a new one), gives
it an empty private working folder and an environment with nothing of the
platform's (no tokens, keys, settings or home path), writes the task to its
standard input, and waits at most the job's time limit; past it, the worker's
whole process group is killed. What the worker prints is parsed as one status
line; anything else it wrote is dropped, never shown to the operator.

Failures become :class:`~policies.errors.JobFailed` with a machine ``code``
(``time_limit``, ``cpu_limit``, ``memory_limit``, ``output_rows``,
``worker_died``, ``engine_error``) and a message that names the limit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from policies.errors import JobFailed

from .worker import RESULT_NAME

SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Limits:
    time_s: float = 60.0
    memory_mb: int = 4096
    max_rows: int = 10_000
    threads: int = 2
    file_mb: int = 64


@dataclass(frozen=True)
class RunResult:
    table: pa.Table
    layers: tuple[str, ...]
    wait_s: float  # from run() to the worker picking up its task
    total_s: float
    spare_used: bool


def _scrubbed_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    env["HOME"] = "/nonexistent"
    # The worker imports this package; nothing else of the platform is passed.
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class _Worker:
    def __init__(self, limits: Limits):
        self.dir = Path(tempfile.mkdtemp(prefix="sandbox-worker-"))
        os.chmod(self.dir, 0o700)
        cpu = max(1, int(limits.time_s * max(1, limits.threads)) + 1)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-s",
                "-m",
                "sandbox.worker",
                "--cpu",
                str(cpu),
                "--mem",
                str(limits.memory_mb),
                "--fsize",
                str(limits.file_mb),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
            env=_scrubbed_env(),
            start_new_session=True,
            close_fds=True,
            text=True,
        )
        self.limits = limits

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Runner:
    """Runs tasks in isolated workers, keeping one warm spare if asked."""

    def __init__(self, limits: Limits, *, spare: bool = False):
        self.limits = limits
        self.spare_enabled = spare
        self._spare: _Worker | None = _Worker(limits) if spare else None

    def _take(self) -> tuple[_Worker, bool]:
        spare = self._spare
        if spare is not None and spare.proc.poll() is None:
            self._spare = None
            return spare, True
        if spare is not None:
            spare.cleanup()
            self._spare = None
        return _Worker(self.limits), False

    def run(self, sql: str, tables: Mapping[str, Path]) -> RunResult:
        started = time.time()
        worker, spare_used = self._take()
        try:
            return self._run_in(worker, sql, tables, started, spare_used)
        finally:
            worker.cleanup()
            if self.spare_enabled and self._spare is None:
                self._spare = _Worker(self.limits)

    def _run_in(
        self,
        worker: _Worker,
        sql: str,
        tables: Mapping[str, Path],
        started: float,
        spare_used: bool,
    ) -> RunResult:
        limits = self.limits
        task = {
            "sql": sql,
            "tables": {name: str(path) for name, path in tables.items()},
            "threads": limits.threads,
            "memory_limit_mb": max(128, limits.memory_mb // 2),
            "max_rows": limits.max_rows,
        }
        try:
            out, _ = worker.proc.communicate(json.dumps(task) + "\n", timeout=limits.time_s)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise JobFailed(
                f"the job exceeded its time limit of {limits.time_s:g} s and was stopped",
                code="time_limit",
            ) from None
        except BrokenPipeError:
            out = ""
        code = worker.proc.returncode
        status = _status(out)
        if status is None:
            if code == -signal.SIGXCPU:
                raise JobFailed(
                    "the job exceeded its CPU-time limit and was stopped", code="cpu_limit"
                )
            raise JobFailed(
                f"the job's worker ended without an answer (exit status {code}); "
                f"it may have exceeded its memory limit of {limits.memory_mb} MiB",
                code="worker_died",
            )
        if not status.get("ok"):
            kind = str(status.get("error", "engine_error"))
            if kind == "output_rows":
                raise JobFailed(
                    f"the job yields more than {limits.max_rows} output rows, the cap; "
                    "group more coarsely",
                    code="output_rows",
                )
            if kind == "memory_limit":
                raise JobFailed(
                    f"the job exceeded its memory limit of {limits.memory_mb} MiB",
                    code="memory_limit",
                )
            if kind == "access_denied":
                raise JobFailed(
                    "the job tried to reach a file outside its granted datasets",
                    code="access_denied",
                    article="Art. 15",
                )
            raise JobFailed(
                f"the engine could not run the query ({kind.split(':')[-1]})", code="engine_error"
            )
        with pa.memory_map(str(worker.dir / RESULT_NAME)) as source:
            table = pa.ipc.open_file(source).read_all()
        finished = time.time()
        return RunResult(
            table=table,
            layers=tuple(status.get("layers", ())),
            wait_s=max(0.0, float(status.get("woke_at", started)) - started),
            total_s=finished - started,
            spare_used=spare_used,
        )

    def close(self) -> None:
        if self._spare is not None:
            self._spare.cleanup()
            self._spare = None


def _status(out: str | None) -> dict | None:
    if not out:
        return None
    for line in reversed(out.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None
