"""Audit log API: filter, page, export as JSONL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from shipyard.audit import service
from shipyard.audit.models import AuditEvent
from shipyard.audit.schemas import AuditEventPublic
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Timestamp

router = APIRouter(prefix="/api/audit", tags=["audit"])


def public(row: AuditEvent) -> AuditEventPublic:
    return AuditEventPublic.model_validate(row, from_attributes=True)


def _query(
    ctx: Ctx,
    actor: str | None,
    action: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> service.AuditQuery:
    return service.AuditQuery(
        workspace_id=ctx.workspace_id,
        actor=actor,
        action=action,
        outcome=outcome,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit,
        include_unscoped=ctx.actor.can("audit:unscoped"),
    )


Outcome = Literal["success", "denied", "failed"]


@router.get("", name="audit.list")
def list_events(
    actor: str | None = Query(default=None, max_length=200),
    action: str | None = Query(default=None, max_length=100),
    outcome: Outcome | None = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    before_id: int | None = Query(default=None, ge=1, le=2**63 - 1),  # a store's integer
    limit: int = Query(default=100, ge=1, le=1000),
    ctx: Ctx = Authorized("audit:read"),
) -> list[AuditEventPublic]:
    q = _query(ctx, actor, action, outcome, since, until, before_id, limit)
    with ctx.tx() as tx:
        return [public(r) for r in service.search(tx.session, q)]


NDJSON = "application/x-ndjson"


@router.get(
    "/export",
    name="audit.export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The matching events, one JSON object a line.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        }
    },
)
def export_events(
    actor: str | None = Query(default=None, max_length=200),
    action: str | None = Query(default=None, max_length=100),
    outcome: Outcome | None = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    ctx: Ctx = Authorized("audit:read"),
) -> StreamingResponse:
    q = _query(ctx, actor, action, outcome, since, until, None, 500)

    def lines() -> Iterator[bytes]:
        for row in service.export(ctx.platform.db, q):
            yield orjson.dumps(public(row).model_dump(mode="json")) + b"\n"

    return StreamingResponse(
        lines(),
        media_type=NDJSON,
        headers={"Content-Disposition": 'attachment; filename="shipyard-audit.jsonl"'},
    )
