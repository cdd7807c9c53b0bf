"""training: fine-tuning jobs, their events and checkpoints

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ft_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("training_file", sa.String(64), nullable=False),
        sa.Column("validation_file", sa.String(64), nullable=True),
        sa.Column("suffix", sa.String(64), nullable=False),
        sa.Column("hyperparameters", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("base", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer, nullable=False),
        sa.Column("trained_tokens", sa.Integer, nullable=False),
        sa.Column("fine_tuned_model", sa.String(200), nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("worker", sa.String(32), nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_ft_jobs_workspace", "ft_jobs", ["workspace_id", "created_at"])
    op.create_index("ix_ft_jobs_status", "ft_jobs", ["status"])
    op.create_table(
        "ft_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("ft_jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ft_events_job", "ft_events", ["job_id", "seq"])
    op.create_table(
        "ft_checkpoints",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("ft_jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ft_checkpoints_job", "ft_checkpoints", ["job_id", "step"])


def downgrade() -> None:
    op.drop_table("ft_checkpoints")
    op.drop_table("ft_events")
    op.drop_table("ft_jobs")
