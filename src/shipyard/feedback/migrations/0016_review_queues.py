"""feedback: review queues, their items, what reviewers did, the rule watermarks

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _ws(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "workspace_id",
        sa.String(32),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def _queue() -> sa.Column[str]:
    return sa.Column(
        "queue_id",
        sa.String(32),
        sa.ForeignKey("review_queues.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "review_queues",
        sa.Column("id", sa.String(32), primary_key=True),
        _ws(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("reviews_wanted", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_review_queues_name"),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(32), primary_key=True),
        _queue(),
        _ws(),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assigned_to", sa.String(400), nullable=True),
        sa.Column("assigned_at", UTCDateTime(), nullable=True),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("queue_id", "trace_id", name="uq_review_items_trace"),
    )
    op.create_index("ix_review_items_next", "review_items", ["queue_id", "status", "created_at"])
    op.create_table(
        "review_actions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "item_id",
            sa.String(32),
            sa.ForeignKey("review_items.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _queue(),
        sa.Column("reviewer", sa.String(400), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("thumbs", sa.SmallInteger(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("feedback_id", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("item_id", "reviewer", name="uq_review_actions_reviewer"),
    )
    op.create_index("ix_review_actions_queue", "review_actions", ["queue_id", "item_id"])
    op.create_table(
        "review_cursors",
        _ws(primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("state", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("review_cursors")
    op.drop_table("review_actions")
    op.drop_table("review_items")
    op.drop_table("review_queues")
