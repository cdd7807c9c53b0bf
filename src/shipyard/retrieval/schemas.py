"""The retrieval API's shapes (the SDK parses the same ones)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
