"""Tables of the retrieval capability (in the metadata database).

- `knowledge_bases`: a named set of documents in a workspace, with how they are split
  (`chunking`) and embedded (`embedding_route`, whose vectors have `dimensions`, known
  after the first embedding).
- `kb_documents`: one document of a knowledge base: its extracted text, the hash that
  tells a changed upload from an unchanged one, and where its indexing stands
  (`queued` -> `indexing` -> `indexed` | `failed` | `cancelled`). A document is claimed
  with a lease, so a worker that was stopped or killed leaves it to the next one.
- `kb_chunks`: a document's chunks: text, position, character span, metadata, and the
  vector (float32, little-endian) the vector index is built from. `id` is the index's
  label. A document's chunks are written, and replaced, in one transaction.
- `kb_files`: files uploaded through OpenAI's `/v1/files` (their bytes, until deleted),
  which a vector store (a knowledge base) then takes as documents.
- `kb_ingestions`: one ingestion job (an upload of one or more documents): its
  documents, their progress, cancel.
- `kb_sources`: a knowledge base kept in step with a table in another SQL database
  (a SQLite file or a PostgreSQL URL, sealed): which columns hold the id, the text, the
  change time and metadata; when it syncs (every `interval_seconds`); the sync's lease,
  watermark (the latest change time seen), counts of its last run and its error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.store import Base, UTCDateTime, utcnow

# SQLite gives a rowid alias only to INTEGER PRIMARY KEY
ChunkId = BigInteger().with_variant(Integer(), "sqlite")


class KnowledgeBaseRow(Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_knowledge_bases_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(2000), default="")
    embedding_route: Mapped[str] = mapped_column(String(200))
    dimensions: Mapped[int] = mapped_column(Integer, default=0)  # 0 until the first vector
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IngestionRow(Base):
    __tablename__ = "kb_ingestions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    documents: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)  # who embeds (re-read when it runs)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FileRow(Base):
    __tablename__ = "kb_files"
    __table_args__ = (Index("ix_kb_files_workspace", "workspace_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DocumentRow(Base):
    __tablename__ = "kb_documents"
    __table_args__ = (
        UniqueConstraint("kb_id", "name", name="uq_kb_documents_name"),
        Index("ix_kb_documents_status", "status", "lease_until"),
        Index("ix_kb_documents_ingestion", "ingestion_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    ingestion_id: Mapped[str | None] = mapped_column(
        ForeignKey("kb_ingestions.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(255))
    file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # from /v1/files
    format: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    text: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str] = mapped_column(String(2000), default="")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str] = mapped_column(String(32), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ChunkRow(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (
        Index("ix_kb_chunks_document", "document_id", "position"),
        Index("ix_kb_chunks_kb", "kb_id", "id"),
        {"sqlite_autoincrement": True},  # ids are index labels: never reused
    )
    id: Mapped[int] = mapped_column(ChunkId, primary_key=True, autoincrement=True)
    kb_id: Mapped[str] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"))
    document_id: Mapped[str] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)  # character span in the document's text
    end: Mapped[int] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class SourceRow(Base):
    __tablename__ = "kb_sources"
    __table_args__ = (Index("ix_kb_sources_due", "next_run_at"),)
    kb_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # sqlite | postgres
    location_enc: Mapped[str] = mapped_column(Text)  # the file's path or the URL, sealed
    location_shown: Mapped[str] = mapped_column(String(1000))  # without the password
    allow_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    table_name: Mapped[str] = mapped_column(String(200))
    id_column: Mapped[str] = mapped_column(String(100))
    text_column: Mapped[str] = mapped_column(String(100))
    updated_column: Mapped[str | None] = mapped_column(String(100), nullable=True)
    metadata_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    mode: Mapped[str] = mapped_column(String(16), default="schedule")  # | continuous
    interval_seconds: Mapped[float] = mapped_column(Float)
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)  # who embeds (re-read when it runs)
    created_by: Mapped[str] = mapped_column(String(400), default="")
    status: Mapped[str] = mapped_column(String(16), default="idle")  # idle|syncing|failed
    worker: Mapped[str] = mapped_column(String(32), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    watermark: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rows_seen: Mapped[int] = mapped_column(Integer, default=0)
    rows_changed: Mapped[int] = mapped_column(Integer, default=0)
    rows_deleted: Mapped[int] = mapped_column(Integer, default=0)
    syncs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
