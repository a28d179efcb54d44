"""Schema 1, the base: every table the store and its features declare on ``metadata``.

A new, empty database runs this and then every later step, which each find their
change already made here (a step adds a column only where it is missing), so a store
created by ``alembic upgrade head`` equals one created by ``metadata.create_all``
(what :meth:`sandbox.core.store.Store.open` does for a new store before it stamps the
head). A store older than Alembic is stamped at its ``meta.schema_version`` first.
"""

import importlib

from alembic import op

from sandbox.core.store import FEATURE_TABLES, metadata

revision = "schema_1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for module in FEATURE_TABLES:  # each declares its tables on ``metadata``
        importlib.import_module(module)
    metadata.create_all(op.get_bind())
    op.execute(
        "INSERT INTO meta (key, value) SELECT 'schema_version', '1' "
        "WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'schema_version')"
    )
