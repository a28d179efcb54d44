"""A Ray-backed map for the platform's parallel shards (PSI set-up, HE group sums).

With the ``ray.address`` setting empty the callers keep their local processes.
With ``local`` the platform starts a Ray cluster on this machine
(``num_cpus = 2``); with ``ray://host:10001`` or ``host:6379`` it joins an
existing cluster, which must have the platform's packages installed (the tasks
import :mod:`sandbox.psi_worker` and :mod:`sandbox.he`). One connection per
process, made on first use.

A shard is a pure function of its arguments and returns bytes, so shards may
run anywhere and retry nowhere (``max_retries = 0``: a lost worker fails the
job instead of quietly doing the work twice). Every Ray failure becomes a
platform error: a cluster that cannot be reached is ``engine_unavailable``, a
task whose worker or node died is ``engine_lost``, any other task error is
``engine_error``; none of Ray's own messages is passed on (they may quote data).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policies.errors import JobFailed, SandboxError

LOCAL = "local"
LOCAL_CPUS = 2
_lock = threading.Lock()
_connected: str | None = None


def connect(address: str) -> None:
    """Start (``local``) or join the Ray cluster named by the ``ray.address`` setting."""
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
        if ray.is_initialized():
            ray.shutdown()
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        try:
            if address == LOCAL:
                ray.init(
                    num_cpus=LOCAL_CPUS,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                    **options,
                )
            else:
                ray.init(address=address, **options)
        except Exception as exc:
            raise SandboxError(
                f"the Ray cluster at '{address}' could not be reached or started "
                f"({type(exc).__name__}); check the setting ray.address",
                code="engine_unavailable",
            ) from exc
        _connected = address


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
    fn: Callable[..., Any], calls: Sequence[tuple], address: str, *, what: str
) -> list[Any]:
    """``[fn(*args) for args in calls]``, each call one Ray task; results in call order.

    ``what`` names the work in error messages ("the PSI setup of 'x'").
    """
    connect(address)
    import ray
    from ray import exceptions as rex

    task = ray.remote(max_retries=0, num_cpus=1)(fn)
    try:
        refs = [task.remote(*args) for args in calls]
        return ray.get(refs)
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


def he_share(
    context: bytes,
    ciphertexts: list[bytes],
    labels,
    shifts: tuple[int, int],
    width: int,
    scheme_value: str,
) -> bytes | None:
    """One HE share as a Ray task: :func:`sandbox.he.evaluate_share`, returning the
    saved ciphertext's bytes (None if the share held no value) instead of a file."""
    from sandbox.he import Scheme, evaluate_share

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "share.bin"
        saved = evaluate_share(
            context, ciphertexts, labels, shifts, width, Scheme(scheme_value), out
        )
        return out.read_bytes() if saved else None
