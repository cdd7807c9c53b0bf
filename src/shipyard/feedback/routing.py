"""The review queues' rule engine, run by the feedback service's periodic loop.

- Trace rules (sample, route): per workspace with such a queue, the traces that started
  in a window `[low, high)` are read one page (`BATCH`) a tick, newest first, through
  the trace store's list (its cursor); when the window is read through, the next one
  starts at `high`. A window closes `SETTLE_NS` before now, so a trace's spans have
  arrived when it is read. The watermark (`review_cursors`, "traces") is saved in the
  same transaction as the items, so each trace is considered once. A queue sees the
  traces from the workspace's first queue on.
- Feedback rules (thumbs down, score below): each piece of feedback is looked at once,
  when its trace's route is copied onto it (`Feedback.resolve_pending`); feedback
  given in a review queue never routes (no loops).
- Alert rules: each firing of the named alert rule (`alert_events`, kind "alert") after
  the watermark ("alerts") routes the traces of the rule's route in the rule's window
  before it fired (newest first, at most the rule's `limit`). A drift alert is such a
  rule on a drift metric.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shipyard.feedback import queues, rules
from shipyard.feedback.queue_tables import ReviewQueueRow
from shipyard.feedback.tables import FeedbackRow
from shipyard.store import Database
from shipyard.tracing.alert_tables import AlertEventRow, AlertRuleRow
from shipyard.tracing.spans import TraceQuery

BATCH = 200  # traces read per workspace a tick
ALERT_BATCH = 20  # alert firings routed per workspace a tick
SETTLE_NS = 30 * 1_000_000_000


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1e9)


def _by_workspace(rows: Iterable[ReviewQueueRow], kinds: Iterable[str]) -> dict[str, list[Any]]:
    wanted = set(kinds)
    out: dict[str, list[ReviewQueueRow]] = {}
    for q in rows:
        if rules.kinds(q.rules) & wanted:
            out.setdefault(q.workspace_id, []).append(q)
    return out


@dataclass
class Tick:
    traces: int = 0  # traces considered
    added: int = 0  # items added


def _why(queue: ReviewQueueRow, trace: Any) -> str | None:
    return rules.trace_reason(queue.rules, trace_id=trace.trace_id, route=trace.route)


def route_traces(
    db: Database, trace_store: Any, *, now_ns: int | None = None, settle_ns: int = SETTLE_NS
) -> Tick:
    """One page of new traces per workspace through the sample and route rules."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    tick = Tick()
    with db.transaction() as s:
        found = _by_workspace(queues.list_queues(s), rules.TRACE_KINDS)
    for workspace_id, qs in found.items():
        with db.transaction() as s:
            state = queues.cursor(s, workspace_id, "traces") or {
                "low": min(_ns(q.created_at) for q in qs)
            }
            low, high = int(state["low"]), state.get("high")
            if high is None:
                high = now_ns - settle_ns
                if high <= low:
                    continue
            page = trace_store.traces(
                workspace_id,
                TraceQuery(since_ns=low, until_ns=int(high), limit=BATCH, cursor=state.get("page")),
            )
            for queue in qs:
                entries = [(t.trace_id, reason) for t in page.items if (reason := _why(queue, t))]
                tick.added += queues.add_items(s, queue, entries)
            tick.traces += len(page.items)
            if page.next_cursor:
                state = {"low": low, "high": high, "page": page.next_cursor}
            else:
                state = {"low": high}
            queues.set_cursor(s, workspace_id, "traces", state)
    return tick


def route_feedback(s: Session, rows: Iterable[FeedbackRow]) -> int:
    """Feedback whose trace fields were just copied through the feedback rules."""
    rows = [r for r in rows if r.queue_item_id is None]
    if not rows:
        return 0
    workspaces = {r.workspace_id for r in rows}
    qs = [q for q in queues.list_queues(s) if q.workspace_id in workspaces]
    found = _by_workspace(qs, rules.FEEDBACK_KINDS)
    added = 0
    for queue in (q for group in found.values() for q in group):
        entries = [
            (r.trace_id, reason)
            for r in rows
            if r.workspace_id == queue.workspace_id
            and (
                reason := rules.feedback_reason(
                    queue.rules, route=r.route, name=r.name, thumbs=r.thumbs, score=r.score
                )
            )
        ]
        added += queues.add_items(s, queue, entries)
    return added


def route_alerts(db: Database, trace_store: Any) -> Tick:
    """The traces behind each new firing of an alert rule a queue names."""
    tick = Tick()
    with db.transaction() as s:
        found = _by_workspace(queues.list_queues(s), ("alert",))
    for workspace_id, qs in found.items():
        named: dict[str, list[tuple[ReviewQueueRow, int]]] = {}
        for queue in qs:
            for rule in queue.rules:
                if rule.get("kind") == "alert":
                    named.setdefault(rule["rule"], []).append((queue, int(rule["limit"])))
        with db.transaction() as s:
            state = queues.cursor(s, workspace_id, "alerts") or {
                "at": min(q.created_at for q in qs).isoformat(),
                "id": "",
            }
            at = datetime.fromisoformat(state["at"]).astimezone(UTC)
            e, r = AlertEventRow, AlertRuleRow
            events = s.execute(
                select(e, r)
                .join(r, r.id == e.rule_id)
                .where(
                    e.workspace_id == workspace_id,
                    e.kind == "alert",
                    r.name.in_(list(named)),
                    or_(e.fired_at > at, and_(e.fired_at == at, e.id > state["id"])),
                )
                .order_by(e.fired_at, e.id)
                .limit(ALERT_BATCH)
            ).all()
            for event, rule in events:
                fired = _ns(event.fired_at)
                for queue, limit in named[rule.name]:
                    page = trace_store.traces(
                        workspace_id,
                        TraceQuery(
                            since_ns=fired - rule.window_seconds * 1_000_000_000,
                            until_ns=fired + 1,
                            route=rule.route,
                            model=rule.model,
                            limit=limit,
                        ),
                    )
                    reason = f"alert {rule.name!r} fired"
                    tick.traces += len(page.items)
                    tick.added += queues.add_items(
                        s, queue, [(t.trace_id, reason) for t in page.items]
                    )
                state = {"at": event.fired_at.isoformat(), "id": event.id}
            queues.set_cursor(s, workspace_id, "alerts", state)
    return tick
