"""Alembic's environment for the store: the connection and its open transaction are
the caller's (:func:`sandbox.core.schema.upgrade`), never a URL from a file."""

from alembic import context

from sandbox.core.store import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
