"""tracing: per-workspace settings (masking detectors and patterns, retention, content)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracing_settings",
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("detectors", sa.JSON(), nullable=False),
        sa.Column("custom_patterns", sa.JSON(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("capture_content", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tracing_settings")
