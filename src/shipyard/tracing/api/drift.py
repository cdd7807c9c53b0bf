"""Drift per route under /api/tracing/drift: a reference window against a current one
(`shipyard.tracing.drift`). Without times, the current window is the last hour and the
reference the hour before it; a reference without times is the span of the same length
just before the current window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from shipyard.errors import InvalidInput, Unavailable
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Timestamp
from shipyard.store import utcnow

router = APIRouter(prefix="/api/tracing", tags=["tracing"])


class DriftPublic(BaseModel):
    route: str
    reference_since: datetime
    reference_until: datetime
    current_since: datetime
    current_until: datetime
    reference_spans: int
    current_spans: int
    input_length_psi: float | None
    output_length_psi: float | None
    latency_psi: float | None
    score_psi: float | None  # null without score_attribute, or no such values
    embedding_distance: float | None  # null: no inputs on a side, or no local model


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


@router.get("/drift", name="tracing.drift")
async def get_drift(
    route: Annotated[str, Query(min_length=1, max_length=200)],
    ctx: Ctx = Authorized("traces:read"),
    reference_since: Annotated[Timestamp | None, Query()] = None,
    reference_until: Annotated[Timestamp | None, Query()] = None,
    current_since: Annotated[Timestamp | None, Query()] = None,
    current_until: Annotated[Timestamp | None, Query()] = None,
    score_attribute: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    embeddings: bool = True,
) -> DriftPublic:
    cur_until = current_until or utcnow()
    cur_since = current_since or cur_until - timedelta(hours=1)
    if cur_since >= cur_until:
        raise InvalidInput("current_since: must be before current_until", param="current_since")
    ref_until = reference_until or cur_since
    ref_since = reference_since or ref_until - (cur_until - cur_since)
    if ref_since >= ref_until:
        raise InvalidInput(
            "reference_since: must be before reference_until", param="reference_since"
        )
    engine = getattr(ctx.platform.services.get("tracing"), "alerts", None)
    if engine is None:
        raise Unavailable("the trace store is starting", retry_after=1)
    report = await engine.drift.areport(
        ctx.workspace_id,
        route,
        (_ns(ref_since), _ns(ref_until)),
        (_ns(cur_since), _ns(cur_until)),
        embeddings=embeddings,
        score_attribute=score_attribute,
    )
    return DriftPublic(
        route=route,
        reference_since=ref_since,
        reference_until=ref_until,
        current_since=cur_since,
        current_until=cur_until,
        reference_spans=report.reference_spans,
        current_spans=report.current_spans,
        input_length_psi=report.input_length_psi,
        output_length_psi=report.output_length_psi,
        latency_psi=report.latency_psi,
        score_psi=report.score_psi,
        embedding_distance=report.embedding_distance,
    )
