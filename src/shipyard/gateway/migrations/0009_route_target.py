"""gateway: a route's target (deployments resolved from a registry alias or a catalog query)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_routes") as batch:
        batch.add_column(sa.Column("target", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_routes") as batch:
        batch.drop_column("target")
