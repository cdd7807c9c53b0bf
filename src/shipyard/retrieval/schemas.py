"""The retrieval API's shapes (the SDK parses the same ones)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue

from shipyard.inputs import Strict
from shipyard.retrieval.chunking import ChunkingIn

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ROUTE = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$"
Scalar = str | int | float | bool


class KnowledgeBaseIn(Strict):
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=2000)
    embedding_route: str = Field(default="all-minilm-l6-v2", pattern=ROUTE)
    chunking: ChunkingIn = Field(default_factory=ChunkingIn)


class KnowledgeBaseUpdate(Strict):
    description: str = Field(max_length=2000)


class KnowledgeBasePublic(BaseModel):
    id: str
    name: str
    description: str
    embedding_route: str
    dimensions: int
    chunking: dict[str, Any]
    documents: int
    chunks: int
    index_engine: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class DocumentIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    text: str = Field(min_length=1, max_length=16 * 1024**2)
    format: Literal["txt", "md", "html", "json", "jsonl", "csv"] | None = None
    metadata: dict[str, Scalar] = Field(default_factory=dict, max_length=64)


class DocumentsIn(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class DocumentPublic(BaseModel):
    id: str
    name: str
    format: str
    size_bytes: int
    content_hash: str
    status: str
    error: str
    chunk_count: int
    metadata: dict[str, Any]
    ingestion_id: str | None
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None


class IngestionPublic(BaseModel):
    id: str
    status: str
    documents: int
    counts: dict[str, int]  # documents by status
    created_by: str
    created_at: datetime
    finished_at: datetime | None


class AddedPublic(BaseModel):
    ingestion: IngestionPublic | None  # None when every document was unchanged
    queued: list[str]
    unchanged: list[str]


class ChunkPublic(BaseModel):
    id: int
    document: str
    position: int
    text: str
    tokens: int
    start: int
    end: int
    metadata: dict[str, Any]


class ChunkPage(BaseModel):
    chunks: list[ChunkPublic]
    next_cursor: str | None


class SearchIn(Strict):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "vector", "lexical"] = "hybrid"
    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict, max_length=16)
    vector_weight: float | None = Field(default=None, ge=0, le=100)
    lexical_weight: float | None = Field(default=None, ge=0, le=100)
    # a registered reranker (`shipyard.rerankers`, built-in: cosine) re-scores the
    # candidates before the best k are taken
    rerank: str | None = Field(default=None, min_length=1, max_length=64)


class HitPublic(BaseModel):
    chunk_id: int
    document: str
    position: int
    text: str
    score: float  # the fused score (hybrid), the cosine (vector) or the BM25 rank score
    vector_score: float | None
    vector_rank: int | None
    lexical_rank: int | None
    rerank_score: float | None = None
    metadata: dict[str, JsonValue]


class SearchPublic(BaseModel):
    query: str
    mode: str
    hits: list[HitPublic]


IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
TABLE = r"^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$"
Column = Annotated[str, Field(pattern=IDENT)]


class SourceIn(Strict):
    """A table a knowledge base follows (see `shipyard.retrieval.sync`)."""

    kind: Literal["sqlite", "postgres"]
    # an absolute path to a SQLite file, or a postgresql:// URL (kept sealed)
    location: str = Field(min_length=1, max_length=2000)
    table: str = Field(pattern=TABLE)
    id_column: Column = "id"
    text_column: Column
    updated_column: Column | None = None  # without one, every sync reads every row
    metadata_columns: list[Column] = Field(default_factory=list, max_length=32)
    # continuous: every second; schedule: every interval_seconds
    mode: Literal["schedule", "continuous"] = "schedule"
    interval_seconds: float = Field(default=300, ge=1, le=7 * 86400)
    allow_internal: bool = False  # a platform administrator's choice


class SourcePublic(BaseModel):
    kind: str
    location: str  # without the password
    table: str
    id_column: str
    text_column: str
    updated_column: str | None
    metadata_columns: list[str]
    mode: str
    interval_seconds: float
    allow_internal: bool
    status: str  # idle | syncing | failed
    error: str
    syncs: int
    rows: int  # rows with text in the source at the last sync
    last_changed: int  # rows queued by the last sync
    last_deleted: int  # documents removed by the last sync
    pending: int  # row documents waiting to be indexed
    lag_seconds: float | None  # how old the index's view of the table may be
    watermark: str | None
    last_started_at: datetime | None
    last_success_at: datetime | None
    next_run_at: datetime
    created_by: str
