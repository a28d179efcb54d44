"""The job loop of one server process.

Each server process (``--workers N`` makes N) runs one :class:`Executor`: a
background thread that first recovers the store once, then loops
runs the oldest queued job (:meth:`JobService.run`) and sleeps briefly when the queue is empty.
A second thread does the chores: it pulls the sources that are due and runs the workflow's
tick (agreements expire at term end and their disposal clauses run, Art. 13), so a slow
pull never holds up a queued job, nor a long job the tick. Claims
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

A job whose run raised past :meth:`JobService.run` (its failure could not be
written: the disk was full for the store too) is remembered and failed with
that reason (``disk_full``) on a later turn of the loop, once the store takes
writes again, not left ``checking`` until a restart.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from jobs.model import KIND as MODEL_KIND
from policies.errors import SandboxError
from sandbox.core import storage
from sandbox.core.platform import Platform
from sandbox.core.principals import by_id
from sandbox.core.store import jobs
from sandbox.models import training
from sandbox.run import leases
from sandbox.run.execution import JobService
from sandbox.run.jobstate import (
    JobState,
    next_queued,
    recover,
    recover_gone,
    state_of,
    transition,
)

log = logging.getLogger("sandbox.api.executor")

IDLE_SLEEP_S = 0.2
REFRESH_CHECK_S = 30.0  # how often the loop looks for scheduled source pulls that are due


def _failure(job_id: int, exc: Exception) -> dict:
    """The reason a job failed, as the operator reads it (never a traceback)."""
    if storage.is_disk_full(exc):
        return storage.disk_full(f"the output of job {job_id}").to_dict()
    if isinstance(exc, SandboxError):
        return exc.to_dict()
    return {
        "code": "internal_error",
        "message": "the platform failed while running the job; nothing was released",
        "article": "Art. 8",
    }


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
        self._beats: threading.Thread | None = None  # PostgreSQL: the host lease's heartbeat
        self._chores: threading.Thread | None = None  # scheduled pulls and the workflow tick
        self._lease_engine: Engine | None = None  # PostgreSQL: the heartbeat's own connection
        self._alive_fd: int | None = None
        self._unsettled: dict[int, dict] = {}  # job id -> the failure to record
        self._next_refresh = 0.0  # monotonic time of the next look for due source pulls
        self._next_tick = 0.0  # monotonic time of the next workflow tick (expiry, Art. 13)
        self._next_recover = 0.0  # PostgreSQL: of the next look for jobs of gone hosts

    def start(self) -> None:
        self._recover_once()
        self._thread = threading.Thread(target=self._loop, name="sandbox-executor", daemon=True)
        self._thread.start()
        self._chores = threading.Thread(target=self._do_chores, name="sandbox-chores", daemon=True)
        self._chores.start()

    def _recover_once(self) -> None:
        if self.platform.store.is_postgres:
            # The lock files below see this host's processes only: on PostgreSQL the
            # jobs failed are those of hosts whose lease ran out (sandbox.run.leases),
            # now and from the chores thread on.
            self._lease_engine = leases.heartbeat_engine(self.platform.store.engine)
            leases.beat(self._lease_engine)
            self.recovered = {"failed": recover_gone(self.platform), "queued": []}
            self._next_recover = time.monotonic() + self.platform.settings.store.host_lease_s / 3
            self._beats = threading.Thread(target=self._beat, name="sandbox-lease", daemon=True)
            self._beats.start()
            return
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

    def _beat(self) -> None:
        """Renew this process's host lease every third of ``store.host_lease_s``, on a
        connection of its own and in a thread that does nothing else: a job runs in the
        loop's thread for as long as it takes, and the look for gone hosts (a writing
        transaction, :meth:`_recover_gone_due`) waits for the write lock, which another
        host may hold for longer than a lease."""
        assert self._lease_engine is not None  # made by _recover_once before this starts
        every = self.platform.settings.store.host_lease_s / 3
        while not self._stop.wait(every):
            try:
                leases.beat(self._lease_engine)
            except Exception:  # the heartbeat must outlive a lost connection
                log.exception("the executor could not renew its host lease")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._settle()
            try:
                outcome = self._run_next()
            except Exception:  # the loop must outlive any one job's error
                log.exception("the executor failed to run a job")
                outcome = None
            if outcome is None:
                self._wake.wait(self.idle_s)
                self._wake.clear()

    def _do_chores(self) -> None:
        """The scheduled pulls and the tick, each when it is due, in a thread of their own:
        not the job loop's (a pull from a stalled source would hold up every queued job),
        nor the heartbeat's (it would let this host's lease run out)."""
        while not self._stop.is_set():
            self._recover_gone_due()
            self._refresh_due()
            self._tick_due()
            due = min(self._next_refresh, self._next_tick)
            if self._lease_engine is not None:
                due = min(due, self._next_recover)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _recover_gone_due(self) -> None:
        """On PostgreSQL, every third of ``store.host_lease_s``: fail the jobs of hosts
        whose lease ran out (:func:`sandbox.run.jobstate.recover_gone`)."""
        if self._lease_engine is None or time.monotonic() < self._next_recover:
            return
        self._next_recover = time.monotonic() + self.platform.settings.store.host_lease_s / 3
        try:
            failed = recover_gone(self.platform)
            if failed:
                log.warning("failed the jobs %s of hosts that are gone", failed)
        except Exception:  # the chores must outlive a lost connection
            log.exception("the executor could not look for the jobs of gone hosts")

    def _refresh_due(self) -> None:
        """Pull the sources whose daily schedule has come (:func:`sandbox.data.refresh.run_due`),
        at most every :data:`REFRESH_CHECK_S`."""
        if time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + REFRESH_CHECK_S
        from sandbox.data.refresh import run_due

        try:
            for pulled in run_due(self.platform, dt.datetime.now(dt.UTC)):
                log.info("scheduled refresh: %s", pulled)
        except Exception:  # the loop must outlive a failed look at the schedules
            log.exception("the executor failed to run the scheduled refreshes")

    def _tick_due(self) -> None:
        """Expire the agreements whose term has ended and carry out their disposal clauses
        (:func:`sandbox.workflow.scheduler.tick`, then the verification indexes), at most
        every :data:`sandbox.workflow.scheduler.TICK_EVERY_S`."""
        from sandbox.models.services import dispose_ended
        from sandbox.verification.disposal import dispose_indexes
        from sandbox.workflow.scheduler import TICK_EVERY_S, tick

        if time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + TICK_EVERY_S
        try:
            done = tick(self.platform, now=dt.datetime.now(dt.UTC))
            deleted = dispose_indexes(self.platform)
            deleted += dispose_ended(self.platform)  # models and their scoring services
            if done["expired"] or deleted:
                log.info("tick: expired %s, indexes deleted %s", done["expired"], deleted)
        except Exception:  # the loop must outlive a failed tick
            log.exception("the executor failed to run the workflow tick")

    def _run_next(self):
        with self.platform.store.read() as conn:
            job_id = next_queued(conn)
            if job_id is None:  # the idle loop's look: one query, not two
                return None
            kind = conn.execute(select(jobs.c.kind).where(jobs.c.id == job_id)).scalar()
        try:
            if kind == MODEL_KIND:  # a model's training (sandbox.models.training)
                card, error = training.run(self.platform, job_id)
                return card or error
            return self.service.run(job_id)
        except Exception as exc:
            # The job's end could not be recorded (a full disk also refuses the store's
            # write): keep it, and record it as failed as soon as the store takes it.
            self._unsettled[job_id] = _failure(job_id, exc)
            raise

    def _settle(self) -> None:
        """Fail the jobs whose run stopped on an error that could not be recorded.

        Without this, a job whose release met a full disk stayed ``running`` or
        ``checking`` until the next restart. Tried again on every turn of the loop; a
        job another path has ended since (or that is still queued: its claim failed,
        it runs later) is left as it is.
        """
        for job_id, reason in list(self._unsettled.items()):
            try:
                with self.platform.store.transaction() as conn:
                    state = state_of(conn, job_id)
                    if state in (JobState.RUNNING, JobState.CHECKING):
                        row = conn.execute(
                            select(jobs.c.operator_id).where(jobs.c.id == job_id)
                        ).first()
                        assert row is not None  # the job being settled is in the store
                        transition(
                            self.platform,
                            conn,
                            job_id,
                            by_id(conn, row.operator_id),
                            JobState.FAILED,
                            {"code": reason["code"], "message": reason["message"]},
                            reason.get("article") or "Art. 8",
                            reason_json=json.dumps(reason),
                        )
                        log.warning("job %s failed late: %s", job_id, reason["code"])
            except Exception as exc:  # still full: try again on the next turn
                if not storage.is_disk_full(exc):
                    log.exception("the executor could not settle job %s", job_id)
                continue
            del self._unsettled[job_id]

    def wake(self) -> None:
        """A job was queued by this process: look now instead of after the idle sleep."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._chores):
            if thread is not None:
                thread.join(timeout)
        self._chores = None
        if self._beats is not None:  # the lease runs out by itself (leases.gone_jobs)
            self._beats.join(timeout)
            self._beats = None
        if self._lease_engine is not None:
            self._lease_engine.dispose()
            self._lease_engine = None
        if self._alive_fd is not None:
            os.close(self._alive_fd)
            self._alive_fd = None
