"""retrieval: table-synced knowledge bases (kb_sources); documents indexed by ingestion

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_sources",
        sa.Column(
            "kb_id",
            sa.String(32),
            sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("location_enc", sa.Text, nullable=False),
        sa.Column("location_shown", sa.String(1000), nullable=False),
        sa.Column("allow_internal", sa.Boolean, nullable=False),
        sa.Column("table_name", sa.String(200), nullable=False),
        sa.Column("id_column", sa.String(100), nullable=False),
        sa.Column("text_column", sa.String(100), nullable=False),
        sa.Column("updated_column", sa.String(100), nullable=True),
        sa.Column("metadata_columns", sa.JSON, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(32), nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("next_run_at", UTCDateTime, nullable=False),
        sa.Column("watermark", sa.String(64), nullable=True),
        sa.Column("last_started_at", UTCDateTime, nullable=True),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("last_success_started_at", UTCDateTime, nullable=True),
        sa.Column("rows_seen", sa.Integer, nullable=False),
        sa.Column("rows_changed", sa.Integer, nullable=False),
        sa.Column("rows_deleted", sa.Integer, nullable=False),
        sa.Column("syncs", sa.Integer, nullable=False),
        sa.Column("error", sa.String(2000), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_kb_sources_due", "kb_sources", ["next_run_at"])
    # an ingestion's progress and settling count its documents by status
    op.create_index("ix_kb_documents_ingestion", "kb_documents", ["ingestion_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_kb_documents_ingestion", table_name="kb_documents")
    op.drop_index("ix_kb_sources_due", table_name="kb_sources")
    op.drop_table("kb_sources")
