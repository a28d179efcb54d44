"""Schema 3: a principal's lifecycle status (``sandbox principal deactivate|reactivate``).

A principal whose ``active`` flag was off (only by editing the store) starts as
deactivated.
"""

import sqlalchemy as sa
from alembic import op

revision = "schema_3"
down_revision = "schema_2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("principals")}
    if "status" not in present:
        op.add_column(
            "principals",
            sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        )
        principals = sa.table("principals", sa.column("status"), sa.column("active"))
        op.execute(
            principals.update()
            .where(principals.c.active == sa.false())
            .values(status="deactivated")
        )
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
