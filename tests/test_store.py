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
