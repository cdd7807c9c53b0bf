"""gateway requests: the registry prompt version a call was rendered from

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "gateway_requests",
        sa.Column("prompt", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("gateway_requests") as batch:
        batch.drop_column("prompt")
