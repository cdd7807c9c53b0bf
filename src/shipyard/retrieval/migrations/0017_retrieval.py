"""retrieval: knowledge bases, files, ingestions, documents, chunks and their full-text index

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from shipyard.store.base import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _kb() -> sa.Column[str]:
    return sa.Column(
        "kb_id",
        sa.String(32),
        sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("embedding_route", sa.String(200), nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("chunking", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_knowledge_bases_name"),
    )
    op.create_table(
        "kb_ingestions",
        sa.Column("id", sa.String(32), primary_key=True),
        _kb(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "kb_files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "workspace_id",
            sa.String(32),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.String(400), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_kb_files_workspace", "kb_files", ["workspace_id", "created_at"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(32), primary_key=True),
        _kb(),
        sa.Column(
            "ingestion_id",
            sa.String(32),
            sa.ForeignKey("kb_ingestions.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("file_id", sa.String(40), nullable=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(2000), nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(32), nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("indexed_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("kb_id", "name", name="uq_kb_documents_name"),
    )
    op.create_index("ix_kb_documents_status", "kb_documents", ["status", "lease_until"])
    op.create_table(
        "kb_chunks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        _kb(),
        sa.Column(
            "document_id",
            sa.String(32),
            sa.ForeignKey("kb_documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("start", sa.Integer, nullable=False),
        sa.Column("end", sa.Integer, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        # ids are the vector index's labels and never reused (SQLite would hand a
        # deleted last row's id out again, and a snapshot could keep its old vector)
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_chunks_document", "kb_chunks", ["document_id", "position"])
    op.create_index("ix_kb_chunks_kb", "kb_chunks", ["kb_id", "id"])
    if op.get_bind().dialect.name == "sqlite":
        # an external-content FTS5 index over the chunks' text, kept by triggers (a
        # cascade delete fires them too: foreign keys are on)
        op.execute(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5("
            "text, content='kb_chunks', content_rowid='id', tokenize='unicode61')"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_ai AFTER INSERT ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_ad AFTER DELETE ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_kb_chunks_fts ON kb_chunks USING gin (to_tsvector('simple', text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS kb_chunks_ad")
        op.execute("DROP TRIGGER IF EXISTS kb_chunks_ai")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("kb_ingestions")
    op.drop_table("kb_files")
    op.drop_table("knowledge_bases")
