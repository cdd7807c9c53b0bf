"""Review queues behind keyword-only functions: the queues, their items (added once per
trace, idempotently), handing out the next item (assigned with a compare-and-set, so
two reviewers never get the same one at once), what reviewers did, progress, and the
agreement between reviewers.

An item wants `reviews_wanted` reviews (the queue's): it is `done` when it has them;
a reviewer's skip makes it `skipped` when nobody has reviewed it and one review is
wanted, else it stays pending for the others. A reviewer acts on an item once.

Agreement is computed on the items with two or more reviews, from the first two
reviews of each (in time order) that gave thumbs, resp. a score:

    thumbs_agreement   share of those pairs with the same thumbs
    kappa              Cohen's kappa of the pairs (the first reviewer as rater A, the
                       second as rater B): (p_o - p_e) / (1 - p_e); None when p_e = 1
    score_mad          mean absolute difference of the two scores
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, NotFound
from shipyard.feedback.queue_tables import (
    ReviewActionRow,
    ReviewCursorRow,
    ReviewItemRow,
    ReviewQueueRow,
)
from shipyard.store import new_id, utcnow

ASSIGNMENT_TTL = timedelta(minutes=30)  # an assignment not acted on is given up after
STATUSES = ("pending", "done", "skipped")


# queues ------------------------------------------------------------------------------


def create_queue(
    s: Session,
    *,
    workspace_id: str,
    name: str,
    description: str,
    rules: list[dict[str, Any]],
    reviews_wanted: int,
    created_by: str,
) -> ReviewQueueRow:
    if s.scalar(
        select(ReviewQueueRow.id).where(
            ReviewQueueRow.workspace_id == workspace_id, ReviewQueueRow.name == name
        )
    ):
        raise Conflict(f"name: a queue named {name!r} exists already")
    now = utcnow()
    row = ReviewQueueRow(
        id=new_id("rq"),
        workspace_id=workspace_id,
        name=name,
        description=description,
        rules=rules,
        reviews_wanted=reviews_wanted,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    s.add(row)
    s.flush()
    return row


def get_queue(s: Session, *, workspace_id: str, queue_id: str) -> ReviewQueueRow:
    row = s.get(ReviewQueueRow, queue_id[:32])
    if row is None or row.workspace_id != workspace_id:
        raise NotFound("no such review queue in this workspace")
    return row


def list_queues(s: Session, *, workspace_id: str | None = None) -> list[ReviewQueueRow]:
    q = select(ReviewQueueRow).order_by(ReviewQueueRow.name)
    if workspace_id is not None:
        q = q.where(ReviewQueueRow.workspace_id == workspace_id)
    return list(s.scalars(q))


def update_queue(s: Session, row: ReviewQueueRow, **values: Any) -> ReviewQueueRow:
    name = values.get("name", row.name)
    if name != row.name and s.scalar(
        select(ReviewQueueRow.id).where(
            ReviewQueueRow.workspace_id == row.workspace_id, ReviewQueueRow.name == name
        )
    ):
        raise Conflict(f"name: a queue named {name!r} exists already")
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    s.flush()
    return row


# items -------------------------------------------------------------------------------


def add_items(s: Session, queue: ReviewQueueRow, entries: Sequence[tuple[str, str]]) -> int:
    """(trace id, reason) pairs into the queue; a trace already in it is skipped."""
    seen: dict[str, str] = {}
    for trace_id, reason in entries:
        seen.setdefault(trace_id, reason)
    if seen:
        there = select(ReviewItemRow.trace_id).where(
            ReviewItemRow.queue_id == queue.id, ReviewItemRow.trace_id.in_(list(seen))
        )
        for trace_id in s.scalars(there):
            seen.pop(trace_id, None)
    if not seen:
        return 0
    now = utcnow()
    values = [
        {
            "id": new_id("ri"),
            "queue_id": queue.id,
            "workspace_id": queue.workspace_id,
            "trace_id": trace_id,
            "reason": reason[:256],
            "status": "pending",
            "reviews": 0,
            "created_at": now + timedelta(microseconds=n),  # oldest first: as given
        }
        for n, (trace_id, reason) in enumerate(seen.items())
    ]
    dialect = s.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # a concurrent tick may add the same trace: the unique key keeps one
    stmt = insert(ReviewItemRow).on_conflict_do_nothing(index_elements=["queue_id", "trace_id"])
    s.execute(stmt, values)
    return len(values)


def get_item(s: Session, queue: ReviewQueueRow, item_id: str) -> ReviewItemRow:
    row = s.get(ReviewItemRow, item_id[:32])
    if row is None or row.queue_id != queue.id:
        raise NotFound("no such item in this queue")
    return row


def list_items(
    s: Session,
    queue: ReviewQueueRow,
    *,
    status: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> list[ReviewItemRow]:
    """Oldest first; `after` is the (created_at, id) of the last item seen."""
    t = ReviewItemRow
    q = select(t).where(t.queue_id == queue.id)
    if status is not None:
        q = q.where(t.status == status)
    if after is not None:
        q = q.where(or_(t.created_at > after[0], and_(t.created_at == after[0], t.id > after[1])))
    return list(s.scalars(q.order_by(t.created_at, t.id).limit(limit)))


@dataclass(frozen=True, slots=True)
class Progress:
    total: int = 0
    pending: int = 0
    done: int = 0
    skipped: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.skipped

    @property
    def percent(self) -> float:
        return 100 * self.finished / self.total if self.total else 0.0


def progress(s: Session, queue_ids: Sequence[str]) -> dict[str, Progress]:
    if not queue_ids:
        return {}
    counts: dict[str, dict[str, int]] = {q: {} for q in queue_ids}
    q = (
        select(ReviewItemRow.queue_id, ReviewItemRow.status, func.count())
        .where(ReviewItemRow.queue_id.in_(queue_ids))
        .group_by(ReviewItemRow.queue_id, ReviewItemRow.status)
    )
    for queue_id, status, n in s.execute(q):
        counts[queue_id][status] = int(n)
    return {
        q: Progress(sum(c.values()), c.get("pending", 0), c.get("done", 0), c.get("skipped", 0))
        for q, c in counts.items()
    }


def _acted(queue_id: str, reviewer: str) -> Any:
    return select(ReviewActionRow.item_id).where(
        ReviewActionRow.queue_id == queue_id, ReviewActionRow.reviewer == reviewer
    )


def next_item(
    s: Session, queue: ReviewQueueRow, *, reviewer: str, now: datetime | None = None
) -> ReviewItemRow | None:
    """The reviewer's next pending item, assigned to them: one assigned to them already,
    else the oldest unassigned (or abandoned) one they have not acted on."""
    now = now or utcnow()
    t = ReviewItemRow
    base = select(t).where(
        t.queue_id == queue.id, t.status == "pending", t.id.not_in(_acted(queue.id, reviewer))
    )
    mine = s.scalars(base.where(t.assigned_to == reviewer).order_by(t.created_at, t.id)).first()
    if mine is not None:
        return mine
    free = or_(t.assigned_to.is_(None), t.assigned_at < now - ASSIGNMENT_TTL)
    for _ in range(5):  # another reviewer may take the one picked: pick again
        row = s.scalars(base.where(free).order_by(t.created_at, t.id).limit(1)).first()
        if row is None:
            return None
        taken = s.execute(
            update(t)
            .where(t.id == row.id, t.status == "pending", free)
            .values(assigned_to=reviewer, assigned_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount:  # type: ignore[attr-defined]  # a CursorResult
            s.refresh(row)
            return row
    return None


def assign(s: Session, item: ReviewItemRow, reviewer: str | None) -> ReviewItemRow:
    if item.status != "pending":
        raise Conflict(f"the item is {item.status}; only pending items are assigned")
    item.assigned_to = reviewer
    item.assigned_at = utcnow() if reviewer else None
    s.flush()
    return item


def _check_actor(s: Session, item: ReviewItemRow, reviewer: str, now: datetime) -> None:
    if item.status != "pending":
        raise Conflict(f"the item is {item.status} already")
    held = item.assigned_to not in (None, reviewer) and (
        item.assigned_at is not None and item.assigned_at >= now - ASSIGNMENT_TTL
    )
    if held:
        raise Conflict(f"the item is assigned to {item.assigned_to}")
    if s.scalar(
        select(ReviewActionRow.id).where(
            ReviewActionRow.item_id == item.id, ReviewActionRow.reviewer == reviewer
        )
    ):
        raise Conflict("you have acted on this item already")


def record(
    s: Session,
    queue: ReviewQueueRow,
    item: ReviewItemRow,
    *,
    reviewer: str,
    action: str,
    thumbs: int | None = None,
    score: float | None = None,
    label: str | None = None,
    feedback_id: str | None = None,
) -> ReviewItemRow:
    """A review or a skip by one reviewer; the item's status follows. Conflict when the
    item is not pending, held by someone else, or this reviewer acted on it."""
    now = utcnow()
    _check_actor(s, item, reviewer, now)
    s.add(
        ReviewActionRow(
            id=new_id("ra"),
            item_id=item.id,
            queue_id=queue.id,
            reviewer=reviewer,
            action=action,
            thumbs=thumbs,
            score=score,
            label=label,
            feedback_id=feedback_id,
            created_at=now,
        )
    )
    if action == "review":
        item.reviews += 1
        if item.reviews >= queue.reviews_wanted:
            item.status, item.done_at = "done", now
    elif item.reviews == 0 and queue.reviews_wanted <= 1:
        item.status, item.done_at = "skipped", now
    item.assigned_to, item.assigned_at = None, None
    try:
        s.flush()
    except IntegrityError:  # the same reviewer, twice at once
        raise Conflict("you have acted on this item already") from None
    return item


def actions(s: Session, item: ReviewItemRow) -> list[ReviewActionRow]:
    q = select(ReviewActionRow).where(ReviewActionRow.item_id == item.id)
    return list(s.scalars(q.order_by(ReviewActionRow.created_at, ReviewActionRow.id)))


# agreement ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    items: int  # items with two or more reviews
    thumbs_pairs: int
    thumbs_agreement: float | None
    kappa: float | None
    score_pairs: int
    score_mad: float | None


def agreement_of(reviews: dict[str, list[tuple[int | None, float | None]]]) -> Agreement:
    """From each item's reviews in time order, (thumbs, score) each."""
    multi = [r for r in reviews.values() if len(r) >= 2]
    thumbs = [p for p in ([t for t, _ in r if t is not None][:2] for r in multi) if len(p) == 2]
    scores = [p for p in ([x for _, x in r if x is not None][:2] for r in multi) if len(p) == 2]
    agree = kappa = None
    if thumbs:
        n = len(thumbs)
        p_o = sum(1 for a, b in thumbs if a == b) / n
        p_e = sum(
            (sum(1 for a, _ in thumbs if a == c) / n) * (sum(1 for _, b in thumbs if b == c) / n)
            for c in (1, -1)
        )
        agree = p_o
        kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else None
    mad = sum(abs(a - b) for a, b in scores) / len(scores) if scores else None
    return Agreement(len(multi), len(thumbs), agree, kappa, len(scores), mad)


def agreement(s: Session, queue: ReviewQueueRow) -> Agreement:
    a = ReviewActionRow
    q = (
        select(a.item_id, a.thumbs, a.score)
        .where(a.queue_id == queue.id, a.action == "review")
        .order_by(a.item_id, a.created_at, a.id)
    )
    reviews: dict[str, list[tuple[int | None, float | None]]] = {}
    for item_id, thumbs, score in s.execute(q):
        reviews.setdefault(item_id, []).append((thumbs, score))
    return agreement_of(reviews)


# the rule engine's watermarks --------------------------------------------------------


def cursor(s: Session, workspace_id: str, name: str) -> dict[str, Any] | None:
    row = s.get(ReviewCursorRow, (workspace_id, name))
    return dict(row.state) if row is not None else None


def set_cursor(s: Session, workspace_id: str, name: str, state: dict[str, Any]) -> None:
    row = s.get(ReviewCursorRow, (workspace_id, name))
    if row is None:
        s.add(ReviewCursorRow(workspace_id=workspace_id, name=name, state=state))
    else:
        row.state = state
    s.flush()
