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
``access_denied``, ``network_denied``, ``worker_died``, ``engine_error``) and a
message that names the limit. The status line is read as untrusted: only known
error kinds, known layer names and numbers are taken from it, so nothing a
worker prints reaches the operator verbatim.

At start-up the runner asks the kernel which isolation layers it can give
(:func:`available_layers`) and logs one warning naming each one missing, so a
platform on a host without Landlock, seccomp or network namespaces says so
before its first job; each job's ledger entry lists the layers in force.
"""

from __future__ import annotations

import json
import logging
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
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from policies.errors import JobFailed
from sandbox.run import isolation
from sandbox.run.isolation import KNOWN_LAYERS
from sandbox.run.worker import RESULT_NAME

log = logging.getLogger("sandbox.run.runner")

SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Keep the interpreter single-threaded until the worker confines itself (a thread
# started before Landlock's restrict_self stays outside the domain).
SINGLE_THREAD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
WORKER_MODULE = "sandbox.run.worker"
# The engine's error kinds a status line may name; anything else is "engine_error".
ENGINE_ERRORS = frozenset(
    {
        "BinderException",
        "CatalogException",
        "ConstraintException",
        "ConversionException",
        "DataError",
        "Error",
        "InternalException",
        "InvalidInputException",
        "InvalidTypeException",
        "IOException",
        "NotImplementedException",
        "OutOfRangeException",
        "ParserException",
        "ProgrammingError",
        "SyntaxException",
        "TypeMismatchException",
        "ArrowInvalid",
        "ArrowNotImplementedError",
        "ArrowTypeError",
        "AttributeError",
        "TypeError",
        "ValueError",
        "KeyError",
        "RuntimeError",
    }
)
EXPECTED_LAYERS = {
    "netns": "no network namespace (run as root or enable user namespaces): "
    "a worker could reach the network",
    "seccomp": "no seccomp filter (x86-64 Linux only): a worker could start processes",
    "landlock_fs": "no Landlock (Linux 5.13+ with landlock in the LSM list): a worker "
    "could read any file the platform's user can, DuckDB's external-access switch aside",
}


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
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(SINGLE_THREAD_ENV)
    return env


def available_layers() -> list[str]:
    """The kernel-dependent layers this host can give a worker (probed, nothing changed)."""
    found = []
    if os.geteuid() == 0 or _userns_possible():
        found.append("netns")
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        found.append("seccomp")
    if isolation.landlock_abi() >= 1:
        found.append("landlock_fs")
    return found


def _userns_possible() -> bool:
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        return False


def warn_missing_layers(*, quiet: bool = False) -> list[str]:
    """Log one warning per missing layer (once per process); returns their names."""
    have = set(available_layers())
    missing = [name for name in EXPECTED_LAYERS if name not in have]
    for name in [] if quiet else missing:
        log.warning("job isolation degraded: %s", EXPECTED_LAYERS[name])
    return missing


WORKDIR_PREFIX = "sandbox-worker-"


def sweep_leftovers(root: Path | None = None) -> list[Path]:
    """Remove the working folders of workers whose platform process is gone.

    A worker's folder holds its raw result (before the output check, with entity
    keys) until the runner reads and removes it; a platform process killed in
    between (kill -9, a lost node) leaves it behind. Folders are named
    ``sandbox-worker-<platform pid>-<random>``; each new runner removes those of
    dead pids. Returns what was removed.
    """
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(f"{WORKDIR_PREFIX}*"):
        owner = folder.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if not owner.isdigit() or _process_alive(int(owner)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Worker:
    def __init__(self, limits: Limits, module: str = WORKER_MODULE):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        os.chmod(self.dir, 0o700)
        cpu = max(1, int(limits.time_s * max(1, limits.threads)) + 1)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-s",
                "-m",
                module,
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
    """Runs tasks in isolated workers, keeping one warm spare if asked.

    ``worker_module`` is the module the worker runs (``python -m``); only the
    attack tests name another one, a harness built on :func:`sandbox.run.worker.serve`.
    """

    _warned = False

    def __init__(self, limits: Limits, *, spare: bool = False, worker_module: str = WORKER_MODULE):
        self.limits = limits
        self.spare_enabled = spare
        self.module = worker_module
        self.missing_layers = warn_missing_layers(quiet=Runner._warned)
        Runner._warned = True
        sweep_leftovers()
        self._spare: _Worker | None = _Worker(limits, self.module) if spare else None

    def _take(self) -> tuple[_Worker, bool]:
        spare = self._spare
        if spare is not None and spare.proc.poll() is None:
            self._spare = None
            return spare, True
        if spare is not None:
            spare.cleanup()
            self._spare = None
        return _Worker(self.limits, self.module), False

    def run(
        self, sql: str, tables: Mapping[str, Path], extra: Mapping[str, Any] | None = None
    ) -> RunResult:
        """Run ``sql`` over ``tables`` in a worker; ``extra`` adds fields to the task (the
        model worker's training spec, ``sandbox.models``)."""
        started = time.time()
        worker, spare_used = self._take()
        try:
            return self._run_in(worker, sql, tables, started, spare_used, extra)
        finally:
            worker.cleanup()
            if self.spare_enabled and self._spare is None:
                self._spare = _Worker(self.limits, self.module)

    def _run_in(
        self,
        worker: _Worker,
        sql: str,
        tables: Mapping[str, Path],
        started: float,
        spare_used: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> RunResult:
        limits = self.limits
        task = {
            "sql": sql,
            "tables": {
                name: [str(p) for p in path] if isinstance(path, list | tuple) else str(path)
                for name, path in tables.items()
            },
            "threads": limits.threads,
            "memory_limit_mb": max(128, limits.memory_mb // 2),
            "max_rows": limits.max_rows,
            **(extra or {}),
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
        status = _answer(out, worker.proc.returncode, limits)
        with pa.memory_map(str(worker.dir / RESULT_NAME)) as source:
            table = pa.ipc.open_file(source).read_all()
        finished = time.time()
        return RunResult(
            table=table,
            layers=_layers(status.get("layers")),
            wait_s=_wait(status.get("woke_at"), started, finished),
            total_s=finished - started,
            spare_used=spare_used,
        )

    def close(self) -> None:
        if self._spare is not None:
            self._spare.cleanup()
            self._spare = None


def _layers(value) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(v for v in value if isinstance(v, str) and v in KNOWN_LAYERS))


def _wait(woke, started: float, finished: float) -> float:
    if not isinstance(woke, int | float) or isinstance(woke, bool):
        return 0.0
    return min(max(0.0, float(woke) - started), finished - started)


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


def _answer(out: str, code: int | None, limits: Limits) -> dict:
    """The worker's status line when it ran the query, else the JobFailed that names the
    limit or fault (the engine's own words go to the host's log only)."""
    status = _status(out)
    if status is None:
        if code == -signal.SIGXCPU:
            raise JobFailed("the job exceeded its CPU-time limit and was stopped", code="cpu_limit")
        raise JobFailed(
            f"the job's worker ended without an answer (exit status {code}); "
            f"it may have exceeded its memory limit of {limits.memory_mb} MiB",
            code="worker_died",
        )
    if not status.get("ok"):
        kind = str(status.get("error", "engine_error"))
        if status.get("host_detail"):  # the engine's own words: the host's log only
            log.warning("job worker stopped (%s): %s", kind, status["host_detail"])
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
                "the job tried to reach something outside its granted datasets (a file, "
                "a process or a system call the worker does not allow) and was stopped",
                code="access_denied",
                article="Art. 15",
            )
        if kind == "network_denied":
            raise JobFailed(
                "the job tried to reach the network; job workers have none",
                code="network_denied",
                article="Art. 15",
            )
        engine = kind.split(":", 1)[-1]
        named = f" ({engine})" if engine in ENGINE_ERRORS else ""
        raise JobFailed(f"the engine could not run the query{named}", code="engine_error")
    return status
