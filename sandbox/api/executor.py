"""The job loop of one server process.

Each server process (``--workers N`` makes N) runs one :class:`Executor`: a
background thread that first recovers the store once, then loops
:meth:`JobService.run_next` and sleeps briefly when the queue is empty. Claims
are atomic: :meth:`JobService.run` moves a job from ``queued`` to ``running``
inside a write transaction (``BEGIN IMMEDIATE``), so two processes never run
the same job; the loser of a race gets ``None`` and looks again.

Recovery fails jobs caught mid-way (``running``, ``checking``) and keeps the
queue. It must not fail the jobs a *live* sibling process is running, so the
processes of one home coordinate with two ``flock`` files under ``run/`` (not
``tmp/``, which every process's :meth:`Platform.open` clears of files no live process
names, so a sibling starting up would delete them and then think itself alone):
every process holds ``servers.lock`` shared for its lifetime, and recovery runs
only in a process that could take it exclusively, i.e. when no other server
process of this home is alive. The kernel drops a killed process's locks, so
after a SIGKILL the next start recovers. Known shortcut: a job of a worker
process that dies while its siblings live stays ``running`` until the whole
server restarts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from sandbox.core.platform import Platform
from sandbox.run.execution import JobService
from sandbox.run.jobstate import recover

log = logging.getLogger("sandbox.api.executor")

IDLE_SLEEP_S = 0.2


def _lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class Executor:
    def __init__(self, platform: Platform, service: JobService, *, idle_s: float = IDLE_SLEEP_S):
        self.platform = platform
        self.service = service
        self.idle_s = idle_s
        self.recovered: dict[str, list[int]] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._alive_fd: int | None = None

    def start(self) -> None:
        self._recover_once()
        self._thread = threading.Thread(target=self._loop, name="sandbox-executor", daemon=True)
        self._thread.start()

    def _recover_once(self) -> None:
        folder = self.platform.home / "run"
        folder.mkdir(mode=0o700, exist_ok=True)
        gate = _lock_file(folder / "recover.lock")
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            alive = _lock_file(folder / "servers.lock")
            try:
                fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            if alone:
                self.recovered = recover(self.platform)
                if self.recovered["failed"]:
                    log.warning("recovery failed interrupted jobs %s", self.recovered["failed"])
            fcntl.flock(alive, fcntl.LOCK_SH)
            self._alive_fd = alive
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
            os.close(gate)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                outcome = self.service.run_next()
            except Exception:  # the loop must outlive any one job's error
                log.exception("the executor failed to run a job")
                outcome = None
            if outcome is None:
                self._wake.wait(self.idle_s)
                self._wake.clear()

    def wake(self) -> None:
        """A job was queued by this process: look now instead of after the idle sleep."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._alive_fd is not None:
            os.close(self._alive_fd)
            self._alive_fd = None
