"""The metadata store's schema versions."""

from __future__ import annotations


def test_a_version_1_store_is_upgraded_at_open(tmp_path):
    """A store written before grants named their agreement gains the columns."""
    import sqlite3

    from sandbox.core.store import SCHEMA_VERSION, Store

    path = tmp_path / "store.sqlite"
    Store.open(path, create=True).dispose()
    with sqlite3.connect(path) as db:  # make it look like a version-1 store
        db.execute("ALTER TABLE grants DROP COLUMN agreement_id")
        db.execute("ALTER TABLE grants DROP COLUMN review_required")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    Store.open(path).dispose()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(grants)")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert {"agreement_id", "review_required"} <= columns
    assert version == str(SCHEMA_VERSION)


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
