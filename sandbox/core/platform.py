"""The platform: its home folder, settings, store and signing key, opened once.

Home layout::

    sandbox.toml         optional settings
    store.sqlite         metadata store and ledger
    keys/platform.key    Ed25519 signing key (0600); keys/platform.pub
    vault/               content-addressed Parquet snapshots of dataset versions
    products/            released products, one folder each, with a signed manifest
    numbers/             the entity numbering the job worker reads (sandbox.guard.numbering):
                         copies of the store's numbers, written again from it when missing
    tmp/                 work in progress; cleared at open (never holds anything released)
    run/                 the API's server processes: their lock files and rate-limit buckets;
                         ledger-head.json, the copy of the last signed ledger head (0600)
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection

from policies.errors import ConfigError
from sandbox.core import keys, ledger, storage
from sandbox.core.home import default_home as default_home  # named here for its callers
from sandbox.core.ledger import Actor
from sandbox.core.settings import Settings
from sandbox.core.store import Store

if TYPE_CHECKING:
    from policies.disclosure import DisclosureParams

STORE_NAME = "store.sqlite"
T = TypeVar("T")
_SHARED_LOCK = threading.Lock()


@dataclass
class Platform:
    home: Path
    settings: Settings
    store: Store
    key: Ed25519PrivateKey
    _shared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def disclosure_minimums(self) -> DisclosureParams:
        """The platform's disclosure settings as rules; a grant or an agreement may only
        tighten them (:meth:`DisclosureParams.tightened`)."""
        from policies.disclosure import (  # pyarrow: not at the CLI's start
            CellVerdict,
            DisclosureParams,
        )

        s = self.settings
        return DisclosureParams(
            min_entities=s.disclosure.min_entities,
            dominance_n=s.disclosure.dominance_n,
            dominance_k=s.disclosure.dominance_k,
            p_ratio=s.disclosure.p_ratio,
            missing_cells=CellVerdict(s.disclosure.missing_cells),
            class_share=s.disclosure.class_share,
        )

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """The object ``name`` shared by everything that uses this platform object, made
        by ``make`` on first use (the released-cell history's cache, for one:
        :func:`sandbox.guard.history.history_of`)."""
        with _SHARED_LOCK:
            if name not in self._shared:
                self._shared[name] = make()
            return self._shared[name]

    @classmethod
    def init(cls, home: Path) -> Platform:
        home = Path(home)
        _private_files()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("vault", "products", "tmp"):
            (home / sub).mkdir(mode=0o700, exist_ok=True)
        keys.create_key(home / "keys")
        platform = cls.open(home, _create=True)
        # A new store (a file or a PostgreSQL database) begins its ledger here, once:
        # the write lock makes the check and the entry one step on any store.
        with platform.store.transaction() as conn:
            if ledger.count(conn) == 0:
                platform.record(
                    conn,
                    ledger.SYSTEM,
                    "platform.init",
                    "platform",
                    {"schema": "v1", "canonical_json": ledger.CANONICAL_FORM},
                    "Art. 6",
                )
        return platform

    @classmethod
    def open(cls, home: Path, *, _create: bool = False) -> Platform:
        home = Path(home)
        if not home.is_dir():
            raise ConfigError(f"no platform home at '{home}'; run 'sandbox --home {home} init'")
        _private_files()
        _private_home(home)
        settings = Settings.load(home)
        store = Store.open(home / STORE_NAME, create=_create, url=settings.store.url)
        key = keys.load_private(home / "keys")
        platform = cls(home=home, settings=settings, store=store, key=key)
        platform._clear_tmp()
        return platform

    def _clear_tmp(self) -> None:
        # Work folders are named "<pid>-<random>". One whose process is gone is an
        # interrupted ingestion or release: it is removed, never half-kept.
        tmp = self.home / "tmp"
        tmp.mkdir(exist_ok=True)
        for child in tmp.iterdir():
            pid = child.name.split("-", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            if child.name.endswith(storage.INTENT_SUFFIX):
                # A rename into vault/ or products/ whose commit never came.
                storage.undo_unrecorded(self.home, self.store, child)
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    @property
    def public_key_path(self) -> Path:
        return self.home / "keys" / keys.PUBLIC_NAME

    def record(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        article: str = "Art. 7",
    ) -> int:
        return ledger.append(conn, self.key, actor, action, subject, details, article)

    def work_dir(self) -> Path:
        """A fresh private folder under tmp/ for one ingestion or release."""
        path = self.home / "tmp" / f"{os.getpid()}-{secrets.token_hex(6)}"
        path.mkdir(mode=0o700)
        return path

    def close(self) -> None:
        self.store.dispose()


def _private_files() -> None:
    """Whatever this process creates from now on is its owner's alone (0600 files,
    0700 folders): the store holds entity numbers, numbers/ entity keys, the vault raw data.
    The mask only ever tightens; it is the process's, like the server it runs in."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


def _private_home(home: Path) -> None:
    """The home folder itself is 0700, so nothing under it, even a file written before
    the mask was set (an older home), is reachable by another account."""
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        try:
            home.chmod(mode & 0o700)
        except PermissionError as exc:
            raise ConfigError(
                f"platform home '{home}' may be read by others (mode {mode:04o}) and cannot be "
                f"made private by this account; run 'chmod 700 {home}'"
            ) from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
