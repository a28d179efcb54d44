"""Upgrading the store's schema with its Alembic migrations (``sandbox db upgrade``).

The migrations live in the package (``sandbox/core/migrations``) and run on the
caller's connection, inside one writing transaction: on PostgreSQL the store's write
lock makes two hosts that upgrade at once queue, and DDL rolls back with the rest if a
step fails; SQLite's DDL is transactional too. A store older than Alembic (schema 1 to
3, versioned only in ``meta``) is first stamped at the revision of its version.
Alembic is imported here only, so opening the store never pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from policies.errors import ConfigError
from sandbox.core.store import (
    REVISIONS,
    SCHEMA_VERSION,
    Store,
    make_engine,
    schema_state,
    stamp,
)

MIGRATIONS = "sandbox.core:migrations"


@dataclass(frozen=True)
class Upgrade:
    before: int | None  # the schema version found; None: no store there yet
    after: int


def alembic_config(connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def upgrade(path: Path, url: str = "") -> Upgrade:
    """Bring the store at ``url`` (or the SQLite file ``path``) to the newest schema."""
    from alembic import command

    engine = make_engine(Path(path), url, create=False)  # Store.open's pragmas and lock
    try:
        store = Store(engine)
        with store.transaction() as conn:
            revision, version = schema_state(conn)
            if revision is None and version is None:
                raise ConfigError(
                    "no platform store to upgrade"
                    + (" in the database of setting store.url" if url else f" at {path.name}")
                    + "; run 'sandbox init' to create one"
                )
            before = REVISIONS.index(revision) + 1 if revision in REVISIONS else version
            if revision is None and version is not None:
                stamp(conn, REVISIONS[min(version, SCHEMA_VERSION) - 1])
            command.upgrade(alembic_config(conn), "head")
    finally:
        engine.dispose()
    return Upgrade(before, SCHEMA_VERSION)


def head() -> str:
    """The last revision of the migrations in the package (a test keeps it equal to
    :data:`sandbox.core.store.REVISIONS`)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads
    return heads[0]
