"""gateway requests: the request id is unique (records are written idempotently)

Revision ID: 0005
Revises: 0004

A record replayed from the write-ahead log after a crash may already be stored; the
writer inserts with ON CONFLICT (id) DO NOTHING, which needs this index. Duplicates
an older version could have written are removed first (the earliest row is kept).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM gateway_requests WHERE seq NOT IN "
        "(SELECT MIN(seq) FROM gateway_requests GROUP BY id)"
    )
    op.create_index("ux_gateway_requests_id", "gateway_requests", ["id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_gateway_requests_id", "gateway_requests")
