"""The metadata store: every object of the platform and its ledger.

SQLite in WAL mode through SQLAlchemy Core, so that a PostgreSQL URL can take
its place later (the SQL below is portable Core; only the pragmas are SQLite's).
The schema is versioned in the ``meta`` table; :func:`Store.open` refuses a
store written by a newer schema and upgrades an older one.

Every state change happens inside :meth:`Store.transaction` together with its
ledger entry (``sandbox.core.ledger.append``), so a crash leaves both or neither.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from policies.errors import ConfigError

SCHEMA_VERSION = 3
PG_POOL = 16  # PostgreSQL connections a process keeps open
PG_OVERFLOW = 24  # more it may open at a peak, closed when returned

# The features whose tables the store holds beside its own. Each module declares its
# tables on :data:`metadata` when imported; the store imports them by name before it
# creates or upgrades the schema, so core depends on no feature
# (tests/test_architecture.py checks this list against every ``sandbox/*/tables.py``).
FEATURE_TABLES: tuple[str, ...] = (
    "sandbox.api.tables",
    "sandbox.data.tables",
    "sandbox.guard.tables",
    "sandbox.models.tables",
    "sandbox.psi.tables",
    "sandbox.run.tables",
    "sandbox.verification.tables",
    "sandbox.registry.tables",
)

# The store's schema versions, oldest first, as Alembic revisions
# (sandbox/core/migrations/versions/; ``sandbox db upgrade`` runs them): ``schema_N`` is
# ``meta.schema_version`` N. A new store is created from ``metadata`` and stamped at the
# last; an older store is refused at open until it is upgraded. Tables a feature adds
# to ``metadata`` are created at open (nothing else changes); a change to an existing
# table is a new revision, which adds what is missing, and a new SCHEMA_VERSION.
REVISIONS = ("schema_1", "schema_2", "schema_3")
UPGRADE_COMMAND = "sandbox db upgrade"

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

principals = Table(
    "principals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("org", String(200), nullable=False),
    Column("jurisdiction", String(32)),  # authorities: "city" or a county code
    Column("token_sha256", String(64), nullable=False, unique=True),
    # ``status`` is the principal's lifecycle state, ``active`` or ``deactivated``;
    # ``active`` (schema 1) is kept equal to it, and a token authenticates only when
    # both say active (sandbox.core.principals.authenticate).
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", String(40), nullable=False),
    Column("status", String(20), nullable=False, default="active", server_default="active"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("provider_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("created_at", String(40), nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("path", Text, nullable=False),  # relative to the platform home
    Column("rows", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("classification_json", Text, nullable=False),
    Column("profile_json", Text, nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("dataset_id", "version"),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("columns_json", Text),  # null: every classified column
    Column("extra_aggregates_json", Text, nullable=False),
    Column("aggregate_expressions", Boolean, nullable=False),
    Column("job_kinds_json", Text, nullable=False),
    Column("disclosure_json", Text, nullable=False),  # overrides, only ever stricter
    Column("valid_from", String(40), nullable=False),
    Column("valid_until", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("granted_by", Integer, ForeignKey("principals.id"), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("agreement_id", Integer),  # null: an authority's direct grant (workflow: Art. 14)
    Column("review_required", Boolean, default=False),  # outputs wait for the output review
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("request_json", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason_json", Text),  # refusal or failure, user-safe
    Column("inputs_json", Text),  # dataset versions read
    Column("report_json", Text),  # output check report, user-safe
    Column("runtime_json", Text),  # timings and isolation layers
    Column("product_id", String(64)),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("operator_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("verdict", String(40), nullable=False),
    Column("created_at", String(40), nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("details", Text, nullable=False),
    Column("article", String(32), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Alembic's record of the revision a store is at (its own table; not in ``metadata``).
alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), primary_key=True),
)

# One row: the signed head of the ledger (its last entry), rewritten by every
# append in the same transaction. Truncating the ledger needs a head signature
# the platform never made.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("ts", String(40), nullable=False),
)


# A browser's console session (:mod:`sandbox.core.sessions`), by the SHA-256 of the random
# id its cookie holds; with the digest of the token it was opened with (a rotated token
# ends it) and the CSRF token of its forms. New tables are created in older stores at open.
sessions = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("principal_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Column("ended_at", String(40)),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writing transaction takes SQLite's write lock at once, so concurrent
    # writers queue (busy_timeout) instead of failing half-way; readers in WAL
    # mode are never blocked.
    if conn.get_execution_options().get("sandbox_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


# The key of PostgreSQL's transaction-level advisory lock that every writing
# transaction takes first (:func:`_postgres_begin`): the store's write lock, as
# SQLite's ``BEGIN IMMEDIATE`` is, across every host on the store.
WRITE_LOCK_KEY = 0x5A4E_4442  # "ZNDB"


def _postgres_begin(conn: Connection) -> None:
    # Writers queue one after another across all hosts, as on SQLite, so every check
    # then write (the ledger's last entry, a DP budget, the released-cell history, a
    # job's claim) sees the writes committed before it; readers are never blocked.
    if conn.get_execution_options().get("sandbox_write"):
        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


def hold_write_lock(conn: Connection) -> None:
    """Make sure ``conn``'s transaction holds the store's write lock until it ends. A
    writing transaction (:meth:`Store.transaction`, the group committer) took it as it
    began, so this costs nothing there; on PostgreSQL any other transaction takes it
    now. SQLite needs nothing: a transaction that writes holds the database's lock."""
    if conn.dialect.name == "postgresql" and not conn.get_execution_options().get("sandbox_write"):
        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))


def safe_url(url: str) -> str:
    """``url`` without its password, to name it in an error."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def make_engine(path: Path, url: str, create: bool) -> Engine:
    if not url.strip():
        if not create and not path.exists():
            raise ConfigError(
                f"no platform store at {path.name} in this home; run 'sandbox init' first"
            )
        url = f"sqlite:///{path}"
    try:
        parsed = make_url(url.strip())
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg2")  # the driver installed
        if parsed.drivername.startswith("postgresql"):
            # connections kept for the server's request threads: with the default 5 a
            # busy server opened and closed a backend for a third of its requests
            engine = create_engine(parsed, future=True, pool_size=PG_POOL, max_overflow=PG_OVERFLOW)
        else:
            engine = create_engine(parsed, future=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"setting store.url: cannot use {safe_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgres_begin)
    else:
        raise ConfigError(
            f"setting store.url: {engine.dialect.name} is not a supported store; "
            "use SQLite (empty) or postgresql://"
        )
    return engine


def insert_or(conn: Connection, table: Table) -> Any:
    """An INSERT on ``table`` that takes ``.on_conflict_do_nothing()`` and
    ``.on_conflict_do_update(...)``, in the dialect of the store ``conn`` is on."""
    if conn.dialect.name == "postgresql":
        # imported here: a store on SQLite (and every command's start) does without it
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)


def schema_state(conn: Connection) -> tuple[str | None, int | None]:
    """(Alembic revision, ``meta.schema_version``) of the store ``conn`` is on; None for
    what it does not have (a store older than Alembic has no revision)."""
    names = set(inspect(conn).get_table_names())
    revision = None
    if alembic_version.name in names:
        revision = conn.execute(select(alembic_version.c.version_num)).scalar()
    version = None
    if meta.name in names:
        value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        version = None if value is None else int(value)
    return revision, version


def stamp(conn: Connection, revision: str) -> None:
    """Record ``revision`` as the store's (what ``alembic stamp`` does)."""
    alembic_version.create(conn, checkfirst=True)
    conn.execute(alembic_version.delete())
    conn.execute(alembic_version.insert().values(version_num=revision))


def _require_current(conn: Connection) -> None:
    """Refuse a store at another schema than this software's, naming what to do; stamp
    a current store written before Alembic kept the revision."""
    revision, version = schema_state(conn)
    if revision == REVISIONS[-1]:
        return
    if revision is None and version == SCHEMA_VERSION:
        stamp(conn, REVISIONS[-1])
        return
    found = REVISIONS.index(revision) + 1 if revision in REVISIONS else None
    if revision is None:
        found = version or 1  # the meta table without a version: the first schema
    if found is not None and found < SCHEMA_VERSION:
        raise ConfigError(
            f"the store has schema version {found}, older than this software's "
            f"({SCHEMA_VERSION}); back it up, then run '{UPGRADE_COMMAND}'"
        )
    raise ConfigError(
        f"the store has schema {revision or version}, newer than this software "
        f"({SCHEMA_VERSION}); upgrade the platform"
    )


# What a committed transaction still has to do outside the store (the copy of the
# ledger's signed head, :func:`sandbox.core.ledger.publish_head`): registered in the
# connection's ``info`` by the code that asks for it, run once after the commit,
# dropped with a rollback. Every writer runs them: :meth:`Store.transaction` and the
# group committer (:mod:`sandbox.verification.commit`).
AFTER_COMMIT = "sandbox_after_commit"
_log = logging.getLogger("sandbox.core.store")


def after_commit(conn: Connection, name: str, hook: Callable[[], None]) -> None:
    """Run ``hook`` once this connection's transaction has committed (once per name)."""
    conn.info.setdefault(AFTER_COMMIT, {})[name] = hook


def run_after_commit(conn: Connection) -> None:
    """The hooks of a committed transaction. The commit stands whatever they do, so a
    failing hook is logged, never raised to a caller whose change is already durable."""
    for name, hook in (conn.info.pop(AFTER_COMMIT, None) or {}).items():
        try:
            hook()
        except Exception:
            _log.exception("after-commit step %s failed", name)


def drop_after_commit(conn: Connection) -> None:
    conn.info.pop(AFTER_COMMIT, None)


def after_commit_mark(conn: Connection) -> dict:
    """The hooks registered so far: taken before a SAVEPOINT, so that rolling it back
    (:func:`after_commit_reset`) also drops what its work asked for."""
    return dict(conn.info.get(AFTER_COMMIT) or {})


def after_commit_reset(conn: Connection, mark: dict) -> None:
    conn.info[AFTER_COMMIT] = dict(mark)


def inserted_id(result: CursorResult[Any]) -> int:
    """The integer key of the one row an INSERT statement has just added."""
    key = result.inserted_primary_key
    assert key is not None  # SQLAlchemy reports the key of every single-row INSERT
    return int(key[0])


# The home folder each open store serves (its ``run/`` keeps the copy of the ledger's
# signed head, :func:`sandbox.core.ledger.head_copy_path`): the SQLite file's folder,
# or for a PostgreSQL store the home of this host, which keeps the heads it signed.
HOME_OF: weakref.WeakKeyDictionary[Engine, Path] = weakref.WeakKeyDictionary()


class Store:
    """A handle on the metadata store. Cheap to create; thread-safe via SQLAlchemy's pool."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, path: Path, *, create: bool = False, url: str = "") -> Store:
        """The store at ``url`` (setting ``store.url``), or the SQLite file ``path`` when
        ``url`` is empty. Only SQLite gets the pragmas and ``BEGIN IMMEDIATE``; on
        PostgreSQL a writing transaction takes the store's write lock instead."""
        engine = make_engine(Path(path), url, create)
        HOME_OF[engine] = Path(path).parent
        store = cls(engine)
        try:
            store._migrate(create)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise ConfigError(
                f"the platform store cannot be opened: {exc.__class__.__name__}"
                + (f" (setting store.url: {safe_url(url)})" if url else "")
            ) from exc
        except ConfigError:
            engine.dispose()
            raise
        return store

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _migrate(self, create: bool) -> None:
        for module in FEATURE_TABLES:  # each declares its tables on ``metadata``
            importlib.import_module(module)
        with self.transaction() as conn:  # one writer: hosts starting together queue
            if inspect(conn).has_table(meta.name):
                _require_current(conn)
            elif not create:
                raise ConfigError(
                    "no platform store in the database of setting store.url; "
                    "run 'sandbox init' first"
                )
            else:
                metadata.create_all(conn)
                conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                stamp(conn, REVISIONS[-1])
                return
            metadata.create_all(conn)  # tables a feature declared since: nothing else

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit: the state change and its ledger entry commit together."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sandbox_write=True)
            drop_after_commit(conn)
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                drop_after_commit(conn)
                raise
            run_after_commit(conn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A reading connection that sees one snapshot of the store throughout, as a
        SQLite read transaction in WAL mode does (PostgreSQL: REPEATABLE READ, so a
        chain walked and then its head read are of the same moment)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
