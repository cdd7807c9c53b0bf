"""feedback: thumbs, scores, labels, comments and corrections on traces

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("thumbs", sa.SmallInteger(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("correction", sa.JSON(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("author", sa.String(400), nullable=False),
        sa.Column("end_user", sa.String(256), nullable=True),
        sa.Column("queue_item_id", sa.String(32), nullable=True),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("prompt", sa.String(256), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("at_s", sa.BigInteger(), nullable=False),  # created_at, epoch seconds
    )
    op.create_index("ix_feedback_trace", "feedback", ["workspace_id", "trace_id"])
    op.create_index("ix_feedback_time", "feedback", ["workspace_id", "at_s"])
    op.create_index("ix_feedback_unresolved", "feedback", ["resolved", "created_at"])


def downgrade() -> None:
    op.drop_table("feedback")
