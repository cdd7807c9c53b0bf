"""Feedback under /api/feedback: add it (end users through `app` keys, reviewers, any
client of the API), read it back, and its metrics over time. Thin routes over
`shipyard.feedback.store` and the service's durable writer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from shipyard.errors import InvalidInput, NotFound
from shipyard.feedback import store
from shipyard.feedback.items import FeedbackItem
from shipyard.feedback.schemas import (
    Accepted,
    FeedbackIn,
    FeedbackPage,
    FeedbackPublic,
    MetricPointPublic,
)
from shipyard.feedback.tables import FeedbackRow
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity.roles import Role
from shipyard.inputs import Timestamp
from shipyard.store import new_id

router = APIRouter(prefix="/api/feedback", tags=["feedback"])

MAX_BATCH = 1000


def public(row: FeedbackRow) -> FeedbackPublic:
    return FeedbackPublic(
        id=row.id,
        trace_id=row.trace_id,
        span_id=row.span_id or None,
        name=row.name,
        thumbs=None if row.thumbs is None else ("up" if row.thumbs > 0 else "down"),
        score=row.score,
        label=row.label,
        comment=row.comment,
        correction=row.correction,
        source=row.source,
        author=row.author,
        end_user=row.end_user,
        route=row.route,
        model=row.model,
        prompt=row.prompt,
        created_at=row.created_at,
    )


def item(
    ctx: Ctx, body: FeedbackIn, *, at_ns: int, queue_item_id: str | None = None
) -> FeedbackItem:
    """The item a request adds; the one place an actor's feedback is shaped (the API,
    review queues and the UI all add through it)."""
    is_app = ctx.actor.role == Role.app
    source = "end_user" if is_app else (body.source or "reviewer")
    return FeedbackItem(
        id=new_id("fb"),
        workspace_id=ctx.workspace_id,
        trace_id=body.trace_id,
        span_id=body.span_id or "",
        name=body.name,
        source=source,
        author=ctx.actor.ref,
        at_ns=at_ns,
        thumbs=None if body.thumbs is None else (1 if body.thumbs == "up" else -1),
        score=body.score,
        label=body.label,
        comment=body.comment,
        correction=body.correction,
        end_user=body.end_user,
        queue_item_id=queue_item_id,
    )


def add(ctx: Ctx, bodies: list[FeedbackIn]) -> list[str]:
    items = [item(ctx, b, at_ns=time.time_ns()) for b in bodies]
    ctx.platform.services["feedback"].submit(items)
    return [i.id for i in items]


@router.post("", status_code=202, name="feedback.add")
def add_one(body: FeedbackIn, ctx: Ctx = Authorized("feedback:write")) -> Accepted:
    """Acknowledged (202) once it is in the write-ahead log: it is stored even if the
    server stops right after; it is readable a moment later."""
    return Accepted(ids=add(ctx, [body]))


@router.post("/batch", status_code=202, name="feedback.add_batch")
def add_batch(
    body: Annotated[list[FeedbackIn], Field(min_length=1, max_length=MAX_BATCH)],
    ctx: Ctx = Authorized("feedback:write"),
) -> Accepted:
    """Up to 1,000 pieces, all or none."""
    return Accepted(ids=add(ctx, body))


def _cursor(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    at, _, fid = value.partition(":")
    if not at.isdigit() or not fid.startswith("fb_") or len(fid) > 32 or len(at) > 12:
        raise InvalidInput("cursor: not a cursor this API returned", param="cursor")
    return int(at), fid


@router.get("", name="feedback.list")
def list_feedback(
    ctx: Ctx = Authorized("feedback:read"),
    trace_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
    source: Literal["end_user", "reviewer", "api", "evaluation"] | None = None,
    route: Annotated[str | None, Query(max_length=128)] = None,
    thumbs: Literal["up", "down"] | None = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FeedbackPage:
    """Newest first; `next_cursor` pages on."""
    with ctx.tx() as tx:
        rows = store.search(
            tx.session,
            workspace_id=ctx.workspace_id,
            trace_id=trace_id,
            name=name,
            source=source,
            route=route,
            thumbs=None if thumbs is None else (1 if thumbs == "up" else -1),
            since_s=int(since.timestamp()) if since else None,
            until_s=int(until.timestamp()) if until else None,
            before=_cursor(cursor),
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedbackPage(
        items=[public(r) for r in rows],
        next_cursor=f"{rows[-1].at_s}:{rows[-1].id}" if more else None,
    )


BUCKETS = {"minute": 60, "hour": 3600, "day": 86_400}


@router.get("/metrics", name="feedback.metrics")
def metrics(
    since: Timestamp,
    ctx: Ctx = Authorized("feedback:read"),
    until: Timestamp | None = None,
    bucket: Literal["minute", "hour", "day"] = "hour",
    group_by: Literal["route", "model", "prompt", "name", "source"] | None = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
    route: Annotated[str | None, Query(max_length=128)] = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
    prompt: Annotated[str | None, Query(max_length=256)] = None,
    source: Literal["end_user", "reviewer", "api", "evaluation"] | None = None,
) -> list[MetricPointPublic]:
    """Per time bucket (and group): count, mean score, thumbs up and down, up rate."""
    since_s = int(since.timestamp())
    until_s = int(until.timestamp()) if until else int(time.time()) + 1
    size = BUCKETS[bucket]
    if until_s <= since_s:
        raise InvalidInput("until: must be after since", param="until")
    if (until_s - since_s) // size > 10_000:
        raise InvalidInput("since: at most 10,000 buckets; choose a larger bucket", param="since")
    with ctx.tx() as tx:
        points = store.metrics(
            tx.session,
            workspace_id=ctx.workspace_id,
            since_s=since_s,
            until_s=until_s,
            bucket_s=size,
            group_by=group_by,
            name=name,
            route=route,
            model=model,
            prompt=prompt,
            source=source,
        )
    return [
        MetricPointPublic(
            bucket=datetime.fromtimestamp(p.bucket_s, UTC),
            group=p.group,
            count=p.count,
            score_mean=p.score_mean,
            thumbs_up=p.thumbs_up,
            thumbs_down=p.thumbs_down,
            thumbs_up_rate=p.thumbs_up_rate,
        )
        for p in points
    ]


@router.get("/{feedback_id}", name="feedback.get")
def get_feedback(feedback_id: str, ctx: Ctx = Authorized("feedback:read")) -> FeedbackPublic:
    with ctx.tx() as tx:
        row = store.get(tx.session, workspace_id=ctx.workspace_id, feedback_id=feedback_id[:32])
        if row is None:
            raise NotFound("no such feedback in this workspace")
        return public(row)


@router.delete("/{feedback_id}", status_code=204, name="feedback.delete")
def delete_feedback(feedback_id: str, ctx: Ctx = Authorized("feedback:manage")) -> Response:
    with ctx.tx(target=f"feedback:{feedback_id[:32]}") as tx:
        row = store.get(tx.session, workspace_id=ctx.workspace_id, feedback_id=feedback_id[:32])
        if row is None:
            raise NotFound("no such feedback in this workspace")
        tx.session.delete(row)
    return Response(status_code=204)
