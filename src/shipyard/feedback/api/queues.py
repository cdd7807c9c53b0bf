"""Review queues under /api/feedback/queues: the queues and their rules (admins), their
items with progress, the next item for a reviewer (assigned to them), a review (stored
as feedback through the API's item builder and the write-ahead log) or a skip, the
assignment of an item, and the agreement between reviewers. Thin routes over
`shipyard.feedback.queues`."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput
from shipyard.feedback import queues
from shipyard.feedback.api.feedback import item as feedback_item
from shipyard.feedback.queue_tables import ReviewItemRow, ReviewQueueRow
from shipyard.feedback.schemas import (
    AddedPublic,
    AddItemsIn,
    AgreementPublic,
    AssignIn,
    FeedbackIn,
    ItemPublic,
    ItemsPage,
    NextPublic,
    ProgressPublic,
    QueueIn,
    QueuePublic,
    ReviewedPublic,
    ReviewIn,
)
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid

router = APIRouter(prefix="/api/feedback/queues", tags=["feedback"])


def progress_public(p: queues.Progress) -> ProgressPublic:
    return ProgressPublic(
        total=p.total, pending=p.pending, done=p.done, skipped=p.skipped, percent=p.percent
    )


def queue_public(row: ReviewQueueRow, p: queues.Progress) -> QueuePublic:
    return QueuePublic(
        id=row.id,
        name=row.name,
        description=row.description,
        rules=list(row.rules),
        reviews_wanted=row.reviews_wanted,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        progress=progress_public(p),
    )


def item_public(row: ReviewItemRow) -> ItemPublic:
    return ItemPublic(
        id=row.id,
        queue_id=row.queue_id,
        trace_id=row.trace_id,
        reason=row.reason,
        status=row.status,
        assigned_to=row.assigned_to,
        reviews=row.reviews,
        created_at=row.created_at,
        done_at=row.done_at,
    )


def _progress(s: Session, row: ReviewQueueRow) -> queues.Progress:
    return queues.progress(s, [row.id])[row.id]


def _rules(body: QueueIn) -> list[dict[str, object]]:
    return [r.model_dump() for r in body.rules]


@router.post("", status_code=201, name="feedback.queue_create")
def create(body: QueueIn, ctx: Ctx = Authorized("feedback:manage")) -> QueuePublic:
    with ctx.tx() as tx:
        row = queues.create_queue(
            tx.session,
            workspace_id=ctx.workspace_id,
            created_by=ctx.actor.ref,
            name=body.name,
            description=body.description,
            rules=_rules(body),
            reviews_wanted=body.reviews_wanted,
        )
        tx.target = f"review_queue:{row.id}"
        return queue_public(row, queues.Progress())


@router.get("", name="feedback.queue_list")
def list_queues(ctx: Ctx = Authorized("feedback:review")) -> list[QueuePublic]:
    with ctx.tx() as tx:
        rows = queues.list_queues(tx.session, workspace_id=ctx.workspace_id)
        done = queues.progress(tx.session, [r.id for r in rows])
        return [queue_public(r, done[r.id]) for r in rows]


@router.get("/{queue_id}", name="feedback.queue_get")
def get(queue_id: str, ctx: Ctx = Authorized("feedback:review")) -> QueuePublic:
    with ctx.tx() as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        return queue_public(row, _progress(tx.session, row))


@router.put("/{queue_id}", name="feedback.queue_update")
def update(queue_id: str, body: QueueIn, ctx: Ctx = Authorized("feedback:manage")) -> QueuePublic:
    with ctx.tx(target=f"review_queue:{queue_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        queues.update_queue(
            tx.session,
            row,
            name=body.name,
            description=body.description,
            rules=_rules(body),
            reviews_wanted=body.reviews_wanted,
        )
        return queue_public(row, _progress(tx.session, row))


@router.delete("/{queue_id}", status_code=204, name="feedback.queue_delete")
def delete(queue_id: str, ctx: Ctx = Authorized("feedback:manage")) -> Response:
    with ctx.tx(target=f"review_queue:{queue_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        tx.session.delete(row)
    return Response(status_code=204)


@router.post("/{queue_id}/items", name="feedback.queue_add_items")
def add_items(
    queue_id: str, body: AddItemsIn, ctx: Ctx = Authorized("feedback:manage")
) -> AddedPublic:
    """Traces into the queue by hand; a trace already in it is left as it is."""
    with ctx.tx(target=f"review_queue:{queue_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        entries = [(t, body.reason) for t in body.trace_ids]
        return AddedPublic(added=queues.add_items(tx.session, row, entries))


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    at, _, item_id = value.partition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or not item_id.startswith("ri_"):
        raise InvalidInput("cursor: not a cursor this API returned", param="cursor")
    return when, item_id[:32]


@router.get("/{queue_id}/items", name="feedback.queue_items")
def list_items(
    queue_id: str,
    ctx: Ctx = Authorized("feedback:review"),
    status: Literal["pending", "done", "skipped"] | None = None,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ItemsPage:
    """Oldest first, with the queue's progress."""
    after = _cursor(cursor)
    with ctx.tx() as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        rows = queues.list_items(tx.session, row, status=status, after=after, limit=limit + 1)
        p = _progress(tx.session, row)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return ItemsPage(
        items=[item_public(r) for r in rows],
        next_cursor=f"{last.created_at.isoformat()}|{last.id}" if last else None,
        progress=progress_public(p),
    )


@router.post("/{queue_id}/next", name="feedback.queue_next")
def next_item(queue_id: str, ctx: Ctx = Authorized("feedback:review")) -> NextPublic:
    """Your next pending item, assigned to you (the one you hold, if any)."""
    with ctx.tx(target=f"review_queue:{queue_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        found = queues.next_item(tx.session, row, reviewer=ctx.actor.ref)
        if found is not None:
            tx.target = f"review_item:{found.id}"
        return NextPublic(
            item=item_public(found) if found else None,
            progress=progress_public(_progress(tx.session, row)),
        )


def review(ctx: Ctx, queue_id: str, item_id: str, body: ReviewIn) -> ReviewedPublic:
    """Stored as feedback (source "reviewer", the queue item named) through the API's
    item builder and the write-ahead log, in the transaction that marks the item: a
    refused append (503) leaves the item as it was. The UI reviews through this too."""
    with ctx.tx(target=f"review_item:{item_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        it = queues.get_item(tx.session, row, item_id)
        try:
            fb = FeedbackIn.model_validate(
                {
                    "trace_id": it.trace_id,
                    "source": "reviewer",
                    **body.model_dump(exclude_none=True),
                }
            )
        except ValidationError as exc:
            raise invalid(exc) from None
        built = feedback_item(ctx, fb, at_ns=time.time_ns(), queue_item_id=it.id)
        queues.record(
            tx.session,
            row,
            it,
            reviewer=ctx.actor.ref,
            action="review",
            thumbs=built.thumbs,
            score=built.score,
            label=built.label,
            feedback_id=built.id,
        )
        ctx.platform.services["feedback"].submit([built])
        return ReviewedPublic(item=item_public(it), feedback_id=built.id)


@router.post("/{queue_id}/items/{item_id}/review", name="feedback.queue_review")
def review_item(
    queue_id: str, item_id: str, body: ReviewIn, ctx: Ctx = Authorized("feedback:review")
) -> ReviewedPublic:
    """Thumbs, score, label, comment and/or correction; marks the item done once it has
    the reviews its queue wants. 409 when it is not pending, someone else holds it, or
    you acted on it already."""
    return review(ctx, queue_id, item_id, body)


def skip(ctx: Ctx, queue_id: str, item_id: str) -> ReviewedPublic:
    with ctx.tx(target=f"review_item:{item_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        it = queues.get_item(tx.session, row, item_id)
        queues.record(tx.session, row, it, reviewer=ctx.actor.ref, action="skip")
        return ReviewedPublic(item=item_public(it), feedback_id=None)


@router.post("/{queue_id}/items/{item_id}/skip", name="feedback.queue_skip")
def skip_item(
    queue_id: str, item_id: str, ctx: Ctx = Authorized("feedback:review")
) -> ReviewedPublic:
    """You pass on the item: skipped when nobody reviewed it and one review is wanted,
    else it stays for the others."""
    return skip(ctx, queue_id, item_id)


@router.put("/{queue_id}/items/{item_id}/assignment", name="feedback.queue_assign")
def assign(
    queue_id: str, item_id: str, body: AssignIn, ctx: Ctx = Authorized("feedback:manage")
) -> ItemPublic:
    """Assign a pending item to a reviewer (their actor ref, `user:...`), or release it
    (`reviewer: null`)."""
    with ctx.tx(target=f"review_item:{item_id[:32]}") as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        it = queues.get_item(tx.session, row, item_id)
        return item_public(queues.assign(tx.session, it, body.reviewer))


@router.get("/{queue_id}/agreement", name="feedback.queue_agreement")
def agreement(queue_id: str, ctx: Ctx = Authorized("feedback:review")) -> AgreementPublic:
    with ctx.tx() as tx:
        row = queues.get_queue(tx.session, workspace_id=ctx.workspace_id, queue_id=queue_id)
        a = queues.agreement(tx.session, row)
    return AgreementPublic(
        items=a.items,
        thumbs_pairs=a.thumbs_pairs,
        thumbs_agreement=a.thumbs_agreement,
        kappa=a.kappa,
        score_pairs=a.score_pairs,
        score_mad=a.score_mad,
    )
