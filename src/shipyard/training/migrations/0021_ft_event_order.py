"""training: a job's events numbered once each (a unique index on job and seq)

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    twice = conn.execute(
        sa.text("SELECT 1 FROM ft_events GROUP BY job_id, seq HAVING COUNT(*) > 1 LIMIT 1")
    ).first()
    if twice is not None:  # written by two transactions at once before this revision
        conn.execute(
            sa.text(
                "UPDATE ft_events SET seq = (SELECT r.n FROM (SELECT id, ROW_NUMBER() OVER "
                "(PARTITION BY job_id ORDER BY seq, created_at, id) AS n FROM ft_events) AS r "
                "WHERE r.id = ft_events.id)"
            )
        )
    op.drop_index("ix_ft_events_job", table_name="ft_events")
    op.create_index("ux_ft_events_job_seq", "ft_events", ["job_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_ft_events_job_seq", table_name="ft_events")
    op.create_index("ix_ft_events_job", "ft_events", ["job_id", "seq"])
