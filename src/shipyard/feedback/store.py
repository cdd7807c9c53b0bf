"""The feedback table behind keyword-only functions: idempotent batch inserts (the
writer's), reads for traces and lists, corrections for datasets, the trace fields
copied onto feedback (route, model, prompt version), and metrics over time buckets.

Metrics are integer arithmetic on `at_s` (epoch seconds), so one query serves SQLite
and PostgreSQL:

    feedback_count          pieces of feedback in the bucket
    feedback_score_mean     mean of the numeric scores
    feedback_thumbs_up_rate thumbs up / (thumbs up + thumbs down)
    feedback_thumbs_down    thumbs down
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shipyard.feedback.items import FeedbackItem
from shipyard.feedback.tables import FeedbackRow

METRICS = (
    "feedback_count",
    "feedback_score_mean",
    "feedback_thumbs_up_rate",
    "feedback_thumbs_down",
)
GROUPS = ("route", "model", "prompt", "name", "source")


def row_values(item: FeedbackItem) -> dict[str, Any]:
    at = datetime.fromtimestamp(item.at_ns / 1e9, UTC)
    return {
        "id": item.id,
        "workspace_id": item.workspace_id,
        "trace_id": item.trace_id,
        "span_id": item.span_id,
        "name": item.name,
        "thumbs": item.thumbs,
        "score": item.score,
        "label": item.label,
        "comment": item.comment,
        "correction": item.correction,
        "source": item.source,
        "author": item.author,
        "end_user": item.end_user,
        "queue_item_id": item.queue_item_id,
        "route": "",
        "model": "",
        "prompt": "",
        "resolved": False,
        "created_at": at,
        "at_s": item.at_ns // 1_000_000_000,
    }


def insert(s: Session, items: Sequence[FeedbackItem]) -> None:
    """Store items once each: an id already stored (a replay after a crash) is skipped."""
    if not items:
        return
    values = [row_values(i) for i in items]
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(FeedbackRow).on_conflict_do_nothing(index_elements=["id"])
    else:
        stmt = sqlite.insert(FeedbackRow).on_conflict_do_nothing(index_elements=["id"])
    s.execute(stmt, values)


def get(s: Session, *, workspace_id: str, feedback_id: str) -> FeedbackRow | None:
    row = s.get(FeedbackRow, feedback_id)
    return row if row is not None and row.workspace_id == workspace_id else None


def for_traces(s: Session, *, workspace_id: str, trace_ids: Sequence[str]) -> list[FeedbackRow]:
    if not trace_ids:
        return []
    q = (
        select(FeedbackRow)
        .where(FeedbackRow.workspace_id == workspace_id, FeedbackRow.trace_id.in_(trace_ids))
        .order_by(FeedbackRow.at_s, FeedbackRow.id)
    )
    return list(s.scalars(q))


def search(
    s: Session,
    *,
    workspace_id: str,
    trace_id: str | None = None,
    name: str | None = None,
    source: str | None = None,
    route: str | None = None,
    thumbs: int | None = None,
    since_s: int | None = None,
    until_s: int | None = None,
    before: tuple[int, str] | None = None,  # the cursor: (at_s, id) of the last row seen
    limit: int = 100,
) -> list[FeedbackRow]:
    """Newest first."""
    t = FeedbackRow
    q = select(t).where(t.workspace_id == workspace_id)
    for column, value in (
        (t.trace_id, trace_id),
        (t.name, name),
        (t.source, source),
        (t.route, route),
        (t.thumbs, thumbs),
    ):
        if value is not None:
            q = q.where(column == value)
    if since_s is not None:
        q = q.where(t.at_s >= since_s)
    if until_s is not None:
        q = q.where(t.at_s < until_s)
    if before is not None:
        q = q.where(or_(t.at_s < before[0], and_(t.at_s == before[0], t.id < before[1])))
    return list(s.scalars(q.order_by(t.at_s.desc(), t.id.desc()).limit(limit)))


def corrections(s: Session, *, workspace_id: str, trace_ids: list[str]) -> dict[str, Any]:
    """Trace id -> its latest correction (the output a person said it should have been)."""
    out: dict[str, Any] = {}
    for row in for_traces(s, workspace_id=workspace_id, trace_ids=trace_ids):
        if row.correction is not None:
            out[row.trace_id] = row.correction  # ordered oldest first: the latest wins
    return out


def unresolved(s: Session, *, since_s: int, limit: int) -> list[FeedbackRow]:
    """Feedback whose trace fields are still to be copied, oldest first."""
    q = (
        select(FeedbackRow)
        .where(FeedbackRow.resolved.is_(False), FeedbackRow.at_s >= since_s)
        .order_by(FeedbackRow.at_s)
        .limit(limit)
    )
    return list(s.scalars(q))


def resolve(s: Session, feedback_id: str, *, route: str, model: str, prompt: str) -> None:
    s.execute(
        update(FeedbackRow)
        .where(FeedbackRow.id == feedback_id)
        .values(route=route[:128], model=model[:256], prompt=prompt[:256], resolved=True)
    )


def give_up(s: Session, *, before_s: int) -> int:
    """Feedback on traces never stored (or purged) stops being looked up."""
    result = s.execute(
        update(FeedbackRow)
        .where(FeedbackRow.resolved.is_(False), FeedbackRow.at_s < before_s)
        .values(resolved=True)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # a CursorResult


@dataclass(frozen=True, slots=True)
class FeedbackPoint:
    bucket_s: int
    group: str
    count: int
    scored: int  # pieces with a numeric score
    score_mean: float | None
    thumbs_up: int
    thumbs_down: int

    @property
    def thumbs_up_rate(self) -> float | None:
        rated = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / rated if rated else None

    def value(self, metric: str) -> float | None:
        return {
            "feedback_count": float(self.count),
            "feedback_score_mean": self.score_mean,
            "feedback_thumbs_up_rate": self.thumbs_up_rate,
            "feedback_thumbs_down": float(self.thumbs_down),
        }[metric]


def metrics(
    s: Session,
    *,
    workspace_id: str,
    since_s: int,
    until_s: int,
    bucket_s: int,
    group_by: str | None = None,
    name: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    source: str | None = None,
) -> list[FeedbackPoint]:
    t = FeedbackRow
    bucket = (cast(t.at_s / bucket_s, Integer) * bucket_s).label("bucket")
    group = (getattr(t, group_by) if group_by else literal("")).label("grp")
    q = select(
        bucket,
        group,
        func.count(),
        func.count(t.score),
        func.avg(t.score),
        func.sum(case((t.thumbs > 0, 1), else_=0)),
        func.sum(case((t.thumbs < 0, 1), else_=0)),
    ).where(t.workspace_id == workspace_id, t.at_s >= since_s, t.at_s < until_s)
    for column, value in (
        (t.name, name),
        (t.route, route),
        (t.model, model),
        (t.prompt, prompt),
        (t.source, source),
    ):
        if value is not None:
            q = q.where(column == value)
    q = q.group_by(bucket, group).order_by(bucket, group)
    return [
        FeedbackPoint(
            int(b),
            str(g or ""),
            int(n),
            int(scored or 0),
            float(mean) if mean is not None else None,
            int(up or 0),
            int(down or 0),
        )
        for b, g, n, scored, mean, up, down in s.execute(q)
    ]


def window_value(
    s: Session,
    metric: str,
    *,
    workspace_id: str,
    since_s: int,
    until_s: int,
    route: str | None = None,
    model: str | None = None,
    source: str | None = None,
) -> float | None:
    """One metric (`FeedbackPoint.value`) over [since, until): what alert rules read."""
    points = metrics(
        s,
        workspace_id=workspace_id,
        since_s=since_s,
        until_s=until_s,
        bucket_s=max(1, until_s - since_s),
        route=route,
        model=model,
        source=source,
    )
    total = merge(points)
    return total.value(metric) if total is not None else None


def merge(points: Sequence[FeedbackPoint]) -> FeedbackPoint | None:
    """Several buckets (or groups) as one."""
    if not points:
        return None
    scored = sum(p.scored for p in points)
    total = sum(p.score_mean * p.scored for p in points if p.score_mean is not None)
    return FeedbackPoint(
        points[0].bucket_s,
        "",
        sum(p.count for p in points),
        scored,
        total / scored if scored else None,
        sum(p.thumbs_up for p in points),
        sum(p.thumbs_down for p in points),
    )
