"""The store's Alembic migrations (:mod:`sandbox.core.schema` runs them)."""
