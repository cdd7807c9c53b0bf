"""gateway requests: the trace of each call

Revision ID: 0006
Revises: 0005

A gateway call is a span in the trace store; its ledger line keeps the trace id so the
two meet (the span carries the request id as `shipyard.request_id`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "gateway_requests",
        sa.Column("trace_id", sa.String(32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("gateway_requests", "trace_id")
