"""``sandbox db upgrade``: bring the platform's store to this software's schema.

A host-level command (it refuses ``--server``): it reads the home's settings for
``store.url`` and runs the store's Alembic migrations (:mod:`sandbox.core.schema`),
which every server refuses to start without once the software is newer than the store.
"""

from __future__ import annotations

from sandbox.cli.common import Context, emit, json_option, main, pass_ctx


@main.group()
def db() -> None:
    """The platform's store (SQLite file or PostgreSQL, setting store.url)."""


@db.command("upgrade")
@json_option
@pass_ctx
def db_upgrade(obj: Context, as_json: bool) -> None:
    """Upgrade the store's schema to this software's (back the store up first)."""
    home = obj.host_home()
    from sandbox.core.platform import STORE_NAME
    from sandbox.core.schema import upgrade
    from sandbox.core.settings import Settings

    settings = Settings.load(home)
    done = upgrade(home / STORE_NAME, settings.store.url)
    data = {"before": done.before, "after": done.after}
    text = (
        f"the store is at schema version {done.after}, as this software"
        if done.before == done.after
        else f"the store was upgraded from schema version {done.before} to {done.after}"
    )
    emit(data, as_json, text)
