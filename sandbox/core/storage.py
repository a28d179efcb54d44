"""The storage seam: placing files into the vault and products, disk-full errors, test faults.

Three things every writer of the platform's files shares:

* **Placement intents.** A snapshot or a product folder is written in ``tmp/``
  and renamed into place *before* the store transaction that records it
  commits. A ``kill -9`` between the rename and the commit would leave a file
  no row knows. So the writer first leaves an intent ``tmp/<pid>-<hex>.placing``
  naming the target (:func:`intend`), and the commit removes it
  (:func:`settle_on_commit`). When a platform opens, the intent of a dead
  process is settled (:func:`undo_unrecorded`): a target that the store does not
  reference is removed. No half dataset, no product without its row.
* **Disk full.** ``ENOSPC`` (or ``EDQUOT``, or SQLite's "database or disk is
  full") anywhere in a write becomes :class:`DiskFull` (code ``disk_full``),
  with a message that says what to do; the caller removes what it wrote.
* **Fault injection for tests.** ``SANDBOX_TEST_FAULTS`` (read once, at import)
  lists ``action@point`` pairs, e.g. ``kill@vault.placed`` or
  ``enospc@release.write``; :func:`fault_point` then SIGKILLs the process or
  raises ``ENOSPC`` at that point, or (``fill:/path/of/filler@point``) fills the
  file system of that path to its last byte with that one file, so that every
  later write, the store's included, meets a really full disk. Unset, a
  fault point costs one truth test.

Known shortcut: two registrations of byte-identical data racing with a third
process opening the platform could see the shared snapshot settled away
between the first one's rename and the second one's commit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import signal
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.engine import Connection

from policies.errors import DiskFull
from sandbox.core.store import dataset_versions, products

INTENT_SUFFIX = ".placing"
_FAULTS = tuple(
    spec.partition("@")[::2]
    for spec in os.environ.get("SANDBOX_TEST_FAULTS", "").split(",")
    if "@" in spec
)


def fault_point(name: str) -> None:
    """Die or fail here if a test armed this point (``SANDBOX_TEST_FAULTS``)."""
    if _FAULTS:
        for action, point in _FAULTS:
            if point == name:
                if action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if action == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if action.startswith("fill:"):
                    _fill(action.removeprefix("fill:"))


def _fill(path: str) -> None:
    """Fill the file system holding ``path`` with one file, to its last byte (tests only)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or an exception it came from says the disk is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "database or disk is full" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full(what: str) -> DiskFull:
    return DiskFull(
        f"the platform's disk is full: {what} was not stored and nothing of it was kept; "
        "free space in the platform home (or enlarge it) and try again",
        article="Art. 8",
    )


def write_bytes(path: Path, data: bytes, point: str | None = None) -> None:
    """Write one small file of the platform (a report, a manifest, a signature)."""
    if point:
        fault_point(point)
    Path(path).write_bytes(data)


def intend(home: Path, relative: Path) -> Path:
    """Record that ``home/relative`` is about to be placed; returns the intent file."""
    intent = Path(home) / "tmp" / f"{os.getpid()}-{secrets.token_hex(6)}{INTENT_SUFFIX}"
    intent.write_text(str(relative), encoding="utf-8")
    return intent


def settle_on_commit(conn: Connection, intent: Path) -> None:
    """Remove the intent when ``conn``'s transaction commits (the target is then recorded)."""
    event.listen(conn, "commit", lambda _conn: intent.unlink(missing_ok=True), once=True)


def _referenced(conn: Connection, relative: str) -> bool:
    for column in (dataset_versions.c.path, products.c.path):
        if conn.execute(select(column).where(column == relative).limit(1)).first():
            return True
    return False


def undo_unrecorded(home: Path, store, intent: Path) -> str | None:
    """Settle the intent of a dead process: remove its target unless the store records it.

    Returns the removed target's relative path, or None.
    """
    try:
        relative = intent.read_text(encoding="utf-8").strip()
    except OSError:
        relative = ""
    removed = None
    target = (Path(home) / relative).resolve()
    inside = relative and Path(home).resolve() in target.parents
    if inside and target.exists():
        with store.read() as conn:
            recorded = _referenced(conn, relative)
        if not recorded:
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            removed = relative
    intent.unlink(missing_ok=True)
    return removed


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (snapshots, product files, backups)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
