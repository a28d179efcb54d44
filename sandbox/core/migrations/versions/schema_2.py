"""Schema 2: a grant names its agreement, and whether its outputs wait for review."""

import sqlalchemy as sa
from alembic import op

revision = "schema_2"
down_revision = "schema_1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("grants")}
    if "agreement_id" not in present:
        op.add_column("grants", sa.Column("agreement_id", sa.Integer()))
    if "review_required" not in present:
        op.add_column(
            "grants",
            sa.Column("review_required", sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
