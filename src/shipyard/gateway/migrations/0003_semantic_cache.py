"""gateway routes: semantic cache settings

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_routes") as batch:
        batch.add_column(sa.Column("semantic_threshold", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column(
                "semantic_embedding_route",
                sa.String(128),
                nullable=False,
                server_default="all-minilm-l6-v2",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_routes") as batch:
        batch.drop_column("semantic_embedding_route")
        batch.drop_column("semantic_threshold")
