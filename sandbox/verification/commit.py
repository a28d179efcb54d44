"""Group commit: many calls' ledger writes in one durable transaction.

Every ledger append takes SQLite's write lock and re-signs the head; one
transaction per call would make the lock and the fsync the bottleneck. A
:class:`GroupCommitter` owns one thread and one store connection (``synchronous=FULL``,
so a commit is on disk, not only in the OS's cache). Callers :meth:`submit` a unit of
work (a function of the open connection) and wait on its future; the thread takes
whatever has queued within ``interval_s`` (at most ``max_batch``), runs each unit in
its own SAVEPOINT (one failing unit does not undo the others), commits once, and only
then resolves the futures. So a call is answered only after its ledger entry is
durable, and a crash before the commit loses only calls nobody was answered.

Each unit runs under the write lock, so the limits it reads and updates are exact
across server processes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy.engine import Connection, Engine

from sandbox.core.store import (
    after_commit_mark,
    after_commit_reset,
    drop_after_commit,
    run_after_commit,
)

Work = Callable[[Connection], Any]
_STOP = object()


class GroupCommitter:
    def __init__(self, engine: Engine, interval_s: float = 0.002, max_batch: int = 256):
        self.engine = engine
        self.interval_s = interval_s
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="verify-commit", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0
        self.units = 0

    def submit(self, work: Work) -> Future:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        future: Future = Future()
        self._queue.put((work, future))
        return future

    def run(self, work: Work, timeout: float = 60.0) -> Any:
        """Submit and wait: the unit's result once its transaction is committed."""
        return self.submit(work).result(timeout)

    def close(self) -> None:
        with self._lock:
            started = self._started
        if started:
            self._queue.put(_STOP)
            self._thread.join(10)

    def _take(self) -> tuple[list, bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.interval_s
        stop = False
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=max(left, 0)) if left > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # PostgreSQL commits durably by default
                driver = conn.connection.driver_connection
                assert driver is not None  # an open Connection holds its driver connection
                driver.execute("PRAGMA synchronous=FULL")
            conn = conn.execution_options(sandbox_write=True)
            stop = False
            while not stop:
                batch, stop = self._take()
                if batch:
                    self._commit(conn, batch)

    def _commit(self, conn: Connection, batch: list) -> None:
        results: list[tuple[Future, bool, Any]] = []
        drop_after_commit(conn)
        try:
            with conn.begin():
                for work, future in batch:
                    savepoint = conn.begin_nested()
                    mark = after_commit_mark(conn)
                    try:
                        value = work(conn)
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        savepoint.rollback()
                        after_commit_reset(conn, mark)
                        results.append((future, False, exc))
                    else:
                        savepoint.commit()
                        results.append((future, True, value))
        except BaseException as exc:  # noqa: BLE001 - the commit failed: nothing is durable
            drop_after_commit(conn)
            for _work, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        run_after_commit(conn)  # e.g. the ledger head's copy, before anyone is answered
        self.batches += 1
        self.units += len(batch)
        for future, ok, value in results:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
