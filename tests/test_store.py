"""The metadata store's schema versions."""

from __future__ import annotations


def _columns(path, table):
    import sqlite3

    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _make_old(path, version: int) -> None:
    """Make a new store look like one of an older schema version, written before Alembic."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE alembic_version")
        if version < 3:
            db.execute("ALTER TABLE principals DROP COLUMN status")
        if version < 2:
            db.execute("ALTER TABLE grants DROP COLUMN agreement_id")
            db.execute("ALTER TABLE grants DROP COLUMN review_required")
        db.execute(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'")


def test_an_older_store_is_refused_at_open_until_db_upgrade(tmp_path):
    """A store of schema version 1 (before grants named their agreement) is refused with
    the command that upgrades it; ``sandbox db upgrade`` adds the columns of versions 2
    and 3 and stamps the last revision; the store then opens."""
    import sqlite3

    import pytest

    from policies.errors import ConfigError
    from sandbox.core.schema import upgrade
    from sandbox.core.store import REVISIONS, SCHEMA_VERSION, Store

    path = tmp_path / "store.sqlite"
    Store.open(path, create=True).dispose()
    _make_old(path, 1)
    with pytest.raises(ConfigError, match="schema version 1, older .*'sandbox db upgrade'"):
        Store.open(path)
    assert "agreement_id" not in _columns(path, "grants")  # refused: nothing changed

    done = upgrade(path)
    assert (done.before, done.after) == (1, SCHEMA_VERSION)
    Store.open(path).dispose()
    assert {"agreement_id", "review_required"} <= _columns(path, "grants")
    assert "status" in _columns(path, "principals")
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert (version, revision) == (str(SCHEMA_VERSION), REVISIONS[-1])
    assert upgrade(path).before == SCHEMA_VERSION  # a second run has nothing to do


def test_a_current_store_from_before_alembic_is_stamped_at_open(tmp_path):
    import sqlite3

    from sandbox.core.store import REVISIONS, Store

    path = tmp_path / "store.sqlite"
    Store.open(path, create=True).dispose()
    _make_old(path, 3)
    Store.open(path).dispose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (REVISIONS[-1],)
        ]


def test_a_store_of_a_newer_schema_is_refused(tmp_path):
    import sqlite3

    import pytest

    from policies.errors import ConfigError
    from sandbox.core.store import Store

    path = tmp_path / "store.sqlite"
    Store.open(path, create=True).dispose()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'schema_9'")
    with pytest.raises(ConfigError, match="newer than this software"):
        Store.open(path)


def test_the_migrations_from_nothing_make_the_schema_a_new_store_has(tmp_path):
    """The Alembic chain run on an empty database (base, then each step finding its
    change made) gives the tables and columns ``Store.open`` creates, and its head is
    the store's last revision."""
    import sqlite3

    from sqlalchemy import create_engine

    from sandbox.core.schema import alembic_config, head
    from sandbox.core.store import REVISIONS, Store

    assert head() == REVISIONS[-1]
    created = tmp_path / "created.sqlite"
    Store.open(created, create=True).dispose()
    migrated = tmp_path / "migrated.sqlite"
    engine = create_engine(f"sqlite:///{migrated}")
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()

    def shape(path):
        with sqlite3.connect(path) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {
                t: sorted((r[1], r[2], r[3]) for r in db.execute(f"PRAGMA table_info({t})"))
                for t in tables
            }

    assert shape(migrated) == shape(created)
    assert len(shape(created)) > 30


def test_db_upgrade_from_the_command_line(tmp_path):
    """``sandbox db upgrade`` on a version-2 home, then the home serves commands again."""
    import json

    from click.testing import CliRunner

    from sandbox.cli.app import main
    from sandbox.core.platform import Platform

    home = tmp_path / "home"
    Platform.init(home).close()
    _make_old(home / "store.sqlite", 2)
    runner = CliRunner()
    refused = runner.invoke(main, ["--home", str(home), "ledger", "verify"])
    assert refused.exit_code != 0 and "sandbox db upgrade" in refused.output
    done = runner.invoke(main, ["--home", str(home), "db", "upgrade", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"before": 2, "after": 3}
    assert runner.invoke(main, ["--home", str(home), "ledger", "verify"]).exit_code == 0
    missing = runner.invoke(main, ["--home", str(tmp_path / "none"), "db", "upgrade"])
    assert missing.exit_code != 0 and "sandbox init" in missing.output


def test_a_store_url_of_another_database_is_refused_naming_the_setting(tmp_path, monkeypatch):
    import pytest

    from policies.errors import ConfigError
    from sandbox.core.platform import Platform

    monkeypatch.setenv("SANDBOX_STORE_URL", "mysql://root@localhost/sandbox")
    with pytest.raises(ConfigError, match="store.url") as refused:
        Platform.init(tmp_path / "home")
    assert "postgresql://" in str(refused.value)
    assert not (tmp_path / "home" / "store.sqlite").exists()


def test_an_empty_store_url_keeps_the_sqlite_file_in_the_home(tmp_path, monkeypatch):
    from sandbox.core.platform import Platform

    monkeypatch.setenv("SANDBOX_STORE_URL", "")
    platform = Platform.init(tmp_path / "home")
    try:
        assert platform.store.engine.dialect.name == "sqlite"
        assert (tmp_path / "home" / "store.sqlite").exists()
    finally:
        platform.close()
