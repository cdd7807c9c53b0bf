"""serving: canaries of registered model versions on gateway routes

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("stable_alias", sa.String(64), nullable=False),
        sa.Column("stable_version", sa.Integer, nullable=False),
        sa.Column("canary_version", sa.Integer, nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("min_samples", sa.Integer, nullable=False),
        sa.Column("promote_after_s", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_target", sa.JSON, nullable=True),
        sa.Column("decision", sa.JSON, nullable=True),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_canaries_workspace", "canaries", ["workspace_id", "started_at"])
    op.create_index("ix_canaries_status", "canaries", ["status"])


def downgrade() -> None:
    op.drop_table("canaries")
