"""identity: platform administrators (a flag on users and on API keys)

Revision ID: 0004
Revises: 0003

Identity's revisions live with the foundation (identity declares this folder), after the
gateway's 0002 and 0003 in the one history. On an instance that already ran its first
start, the bootstrap admin (the first user) and the bootstrap key become platform
administrators, as a first start now makes them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("is_platform_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("platform_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE users SET is_platform_admin = true WHERE id IN "
        "(SELECT id FROM users ORDER BY created_at, id LIMIT 1)"
    )
    op.execute("UPDATE api_keys SET platform_admin = true WHERE created_by = 'bootstrap'")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("platform_admin")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_platform_admin")
