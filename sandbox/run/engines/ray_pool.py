"""A Ray-backed map for the platform's parallel work: PSI set-up shards, HE group
sums, and whole SQL jobs (each in an isolated worker on a Ray node).

With the ``ray.address`` setting empty the callers keep their local processes.
With ``local`` the platform starts a Ray cluster on this machine
(``num_cpus = 2``); with ``ray://host:10001`` or ``host:6379`` it joins an
existing cluster, which must have the platform's packages installed (the tasks
import :mod:`sandbox.psi.worker` and :mod:`sandbox.he.evaluate`). One connection per
process, made on first use.

A shard is a pure function of its arguments and returns bytes, so shards may
run anywhere and retry nowhere (``max_retries = 0``: a lost worker fails the
job instead of quietly doing the work twice). Every Ray failure becomes a
platform error: a cluster that cannot be reached is ``engine_unavailable``, a
task whose worker or node died is ``engine_lost``, any other task error is
``engine_error``; none of Ray's own messages is passed on (they may quote data).

``ray.init`` waits without end for an address where no Ray cluster answers, so
joining is bounded twice: a TCP probe of the address (refused at once when
nothing listens) and a wait of at most ``connect_timeout_s`` for the join itself
(a port that answers but is not Ray).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policies.errors import JobFailed, SandboxError

LOCAL = "local"
LOCAL_CPUS = 2
CONNECT_TIMEOUT_S = 60.0
_lock = threading.Lock()
_connected: str | None = None


def _unreachable(address: str, timeout_s: float) -> str | None:
    """Why ``address`` cannot be a Ray cluster, or None when something listens there."""
    if address in (LOCAL, "auto"):
        return None
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return "it is not host:port, ray://host:port, 'local' or 'auto'"
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout_s):
            return None
    except OSError as exc:
        return f"nothing answered on {host}:{port} ({type(exc).__name__})"


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Start (``local``) or join the Ray cluster named by the ``ray.address`` setting;
    ``engine_unavailable`` within about ``timeout_s`` if it cannot."""
    global _connected
    with _lock:
        try:
            import ray
        except ImportError as exc:
            raise SandboxError(
                "ray.address is set but Ray is not installed: install the platform with its "
                "'ray' extra",
                code="engine_unavailable",
            ) from exc
        if _connected == address and ray.is_initialized():
            return
        why = _unreachable(address, min(timeout_s, 5.0))
        if why:
            raise SandboxError(
                f"the Ray cluster at '{address}' cannot be reached: {why}; check the "
                "setting ray.address",
                code="engine_unavailable",
            )
        if ray.is_initialized():
            ray.shutdown()
        root = str(Path(__file__).resolve().parents[3])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address == LOCAL:
            options.update(num_cpus=LOCAL_CPUS, runtime_env={"env_vars": {"PYTHONPATH": path}})
            # Started on the calling thread: the processes of a local cluster are tied to
            # the thread that starts them and would die with a helper thread.
            failure = _attempt(lambda: ray.init(**options))
        else:
            options.update(address=address)
            failure = _bounded(lambda: ray.init(**options), timeout_s)
        if failure is not None:
            raise SandboxError(
                f"the Ray cluster at '{address}' could not be reached or started "
                f"({failure}); check the setting ray.address",
                code="engine_unavailable",
            )
        _connected = address


def _attempt(start: Callable[[], Any]) -> str | None:
    try:
        start()
    except Exception as exc:
        return type(exc).__name__
    return None


def _bounded(start: Callable[[], Any], timeout_s: float) -> str | None:
    """Run ``start`` on a daemon thread; None when it returned within ``timeout_s``,
    else what went wrong. A join that never returns is left behind on its thread."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            start()
            outcome.append(None)
        except BaseException as exc:  # reported below, never re-raised on this thread
            outcome.append(exc)

    thread = threading.Thread(target=target, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return f"no answer within {timeout_s:g} s"
    return None if outcome[0] is None else type(outcome[0]).__name__


def shutdown() -> None:
    """Leave (or stop, for ``local``) the Ray cluster of this process."""
    global _connected
    with _lock:
        try:
            import ray
        except ImportError:
            return
        if ray.is_initialized():
            ray.shutdown()
        _connected = None


def ray_map(
    fn: Callable[..., Any],
    calls: Sequence[tuple],
    address: str,
    *,
    what: str,
    timeout_s: float | None = None,
) -> list[Any]:
    """``[fn(*args) for args in calls]``, each call one Ray task; results in call order.

    ``what`` names the work in error messages ("the PSI setup of 'x'"); with
    ``timeout_s`` the tasks are cancelled and the work fails when they have not all
    answered by then.
    """
    connect(address)
    import ray
    from ray import exceptions as rex

    task = ray.remote(max_retries=0, num_cpus=1)(fn)
    refs = []
    try:
        calls = _shared_once(ray, calls)
        refs = [task.remote(*args) for args in calls]
        return ray.get(refs, timeout=timeout_s)
    except rex.GetTimeoutError as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise JobFailed(
            f"{what} did not finish on the Ray cluster within {timeout_s:g} s and was "
            "stopped (a busy cluster or a lost node; setting ray.address)",
            code="time_limit",
        ) from exc
    except (rex.WorkerCrashedError, rex.NodeDiedError, rex.RaySystemError) as exc:
        raise JobFailed(
            f"{what} failed: a Ray worker or node was lost (setting ray.address)",
            code="engine_lost",
        ) from exc
    except rex.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SandboxError):
            raise cause from None
        raise JobFailed(
            f"{what} failed in a Ray task ({type(cause).__name__ if cause else 'error'})",
            code="engine_error",
        ) from exc
    except rex.RayError as exc:
        raise JobFailed(
            f"{what} failed: the Ray cluster stopped answering (setting ray.address)",
            code="engine_lost",
        ) from exc


SHARED_BYTES = 1 << 20  # an argument this large, passed to several tasks, is put once


def _shared_once(ray, calls: Sequence[tuple]) -> list[tuple]:
    """The calls with every large argument that several of them pass (the same object:
    an HE context and its ciphertexts, for each share) put in the object store once and
    passed by reference; Ray hands each task the value. Without this each task's
    arguments are serialized apart, one copy per task."""
    seen: dict[int, int] = {}
    for args in calls:
        for arg in args:
            seen[id(arg)] = seen.get(id(arg), 0) + 1
    refs: dict[int, Any] = {}
    out = []
    for args in calls:
        shared = []
        for arg in args:
            if seen[id(arg)] > 1 and _size(arg) >= SHARED_BYTES:
                if id(arg) not in refs:
                    refs[id(arg)] = ray.put(arg)
                arg = refs[id(arg)]
            shared.append(arg)
        out.append(tuple(shared))
    return out


def _size(arg: Any) -> int:
    """Bytes an argument carries, roughly: bytes-like objects, arrays, and lists of them."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return len(arg)
    nbytes = getattr(arg, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(arg, list | tuple):
        return sum(len(a) for a in arg if isinstance(a, bytes | bytearray | memoryview))
    return 0


def run_sql_job(sql: str, tables: dict[str, str], limits: dict[str, Any]) -> tuple:
    """One admitted SQL job as a Ray task: the same isolated DuckDB worker as on the
    platform host (:class:`sandbox.run.runner.Runner`, every layer), started on the Ray
    node that runs the task. Returns (raw result, layers, wait s, run s, node)."""
    import ray

    from sandbox.run.runner import Limits, Runner

    runner = Runner(Limits(**limits))
    try:
        result = runner.run(sql, {name: Path(path) for name, path in tables.items()})
    finally:
        runner.close()
    node = ray.get_runtime_context().get_node_id()
    return result.table, list(result.layers), result.wait_s, result.total_s, node


def dispatch_sql_job(
    sql: str, tables: dict[str, Path], limits: dict[str, Any], address: str
) -> tuple:
    """Run :func:`run_sql_job` on the cluster; the task's own time limit plus a margin
    for scheduling bounds the wait."""
    started = time.time()
    calls = [(sql, {name: str(path) for name, path in tables.items()}, limits)]
    timeout = float(limits["time_s"]) + 60.0
    (answer,) = ray_map(run_sql_job, calls, address, what="the job", timeout_s=timeout)
    table, layers, wait_s, run_s, node = answer
    return table, layers, wait_s, run_s, node, time.time() - started
