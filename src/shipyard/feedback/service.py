"""The feedback capability's service.

    POST /api/feedback ─► Feedback.submit: masked, one write-ahead log append (the
                          acknowledgement) ─► FeedbackWriter (one thread) ─► `feedback`
    every RESOLVE_SECONDS  feedback not yet carrying its trace's route, model and prompt
                          version gets them from the trace store (spans may be stored
                          after the feedback on them arrives); after GIVE_UP_SECONDS
                          without its trace, it stops being looked up; then the review
                          queues' rules (`shipyard.feedback.routing`) over the feedback
                          just resolved, new traces and new alert firings

It is also a `MetricSource`: alert rules can take the feedback metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from shipyard.durable import DurableWriter
from shipyard.errors import Unavailable
from shipyard.feedback import routing, store
from shipyard.feedback.items import FeedbackItem
from shipyard.store import Database

if TYPE_CHECKING:
    from shipyard.platform import Platform

log = logging.getLogger("shipyard.feedback")

RESOLVE_SECONDS = 2.0
GIVE_UP_SECONDS = 86_400
RESOLVE_BATCH = 500
CAPACITY = 50_000
PANEL = "/feedback/traces/{trace_id}"  # on the trace page (`shipyard.feedback.pages`)


class FeedbackWriter(DurableWriter[FeedbackItem]):
    what = "feedback"

    def __init__(
        self, db: Database, dropped: Counter, written: Counter, *, wal_dir: Path | None
    ) -> None:
        super().__init__(
            dropped,
            written,
            capacity=CAPACITY,
            batch=1000,
            wal_dir=wal_dir,
            name="shipyard-feedback",
        )
        self.db = db

    def encode(self, item: FeedbackItem) -> bytes:
        return item.to_bytes()

    def decode(self, payload: bytes) -> FeedbackItem:
        return FeedbackItem.from_bytes(payload)

    def write(self, items: Sequence[FeedbackItem]) -> None:
        with self.db.transaction() as s:
            store.insert(s, items)


class Feedback:
    metrics: tuple[str, ...] = store.METRICS  # the MetricSource's names

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        registry = platform.metrics.registry
        self.dropped = Counter(
            "shipyard_feedback_dropped",
            "Feedback refused for want of room, or an unreadable log entry.",
            registry=registry,
        )
        self.written = Counter("shipyard_feedback_written", "Feedback stored.", registry=registry)
        self.writer = FeedbackWriter(
            platform.db,
            self.dropped,
            self.written,
            wal_dir=platform.settings.home / "wal" / "feedback",
        )
        self._task: asyncio.Task[None] | None = None
        platform.metric_sources.append(self)
        platform.trace_panels.append(PANEL)

    async def start(self) -> None:
        await asyncio.to_thread(self.writer.start)  # replays what was acknowledged
        self._task = asyncio.create_task(self._resolve_loop(), name="shipyard-feedback")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.writer.stop)

    # the request side ----------------------------------------------------------------

    def mask(self, workspace_id: str, item: FeedbackItem) -> FeedbackItem:
        """The workspace's masking (the trace store's) over what people typed."""
        tracing = self.platform.services.get("tracing")
        if tracing is None:
            return item
        masker = tracing.config(workspace_id).masker
        return replace(
            item,
            comment=masker.mask(item.comment) if item.comment else item.comment,
            correction=(
                masker.mask_value(item.correction)
                if item.correction is not None
                else item.correction
            ),
            end_user=masker.mask(item.end_user) if item.end_user else item.end_user,
        )

    def submit(self, items: Sequence[FeedbackItem]) -> None:
        """Make every item durable, or none: raises Unavailable (503) when there is no
        room for all of them."""
        if not self.writer.running:
            raise Unavailable("feedback is starting", retry_after=1)
        if self.writer.backlog + len(items) > CAPACITY:
            raise Unavailable("the feedback writer is behind; retry later", retry_after=1)
        for item in items:
            if not self.writer.submit(self.mask(item.workspace_id, item)):
                raise Unavailable("the feedback log is full; retry later", retry_after=1)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything acknowledged so far is stored (tests)."""
        self.writer.flush(timeout)

    # trace fields --------------------------------------------------------------------

    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(RESOLVE_SECONDS)
            try:
                await asyncio.to_thread(self.resolve_pending)
            except Exception:  # noqa: BLE001 - keep going; the next round retries
                log.exception("copying trace fields onto feedback failed")
            try:
                await asyncio.to_thread(self.route_queues)
            except Exception:  # noqa: BLE001 - keep going; the next round retries
                log.exception("routing traces into review queues failed")

    def route_queues(self, now_ns: int | None = None, settle_ns: int = routing.SETTLE_NS) -> int:
        """One tick of the review queues' trace and alert rules; the items added.
        Traces are read once they started `settle_ns` before now."""
        trace_store = getattr(self.platform.services.get("tracing"), "store", None)
        if trace_store is None:
            return 0
        db = self.platform.db
        added = routing.route_traces(db, trace_store, now_ns=now_ns, settle_ns=settle_ns).added
        return added + routing.route_alerts(self.platform.db, trace_store).added

    def resolve_pending(self, now_s: int | None = None) -> int:
        """Copy route, model and prompt version from each trace onto its feedback."""
        tracing = self.platform.services.get("tracing")
        trace_store = getattr(tracing, "store", None)
        if trace_store is None:
            return 0
        now_s = now_s if now_s is not None else int(time.time())
        done = 0
        with self.platform.db.transaction() as s:
            store.give_up(s, before_s=now_s - GIVE_UP_SECONDS)
            rows = store.unresolved(s, since_s=now_s - GIVE_UP_SECONDS, limit=RESOLVE_BATCH)
            found: dict[tuple[str, str], Any] = {}
            resolved = []
            for row in rows:
                key = (row.workspace_id, row.trace_id)
                if key not in found:
                    found[key] = trace_fields(trace_store, *key)
                fields = found[key]
                if fields is not None:
                    store.resolve(s, row.id, **fields)
                    resolved.append(row)
                    done += 1
            routing.route_feedback(s, resolved)  # the rows carry the copied fields
        return done

    # MetricSource --------------------------------------------------------------------

    def value(
        self,
        metric: str,
        *,
        workspace_id: str,
        since: datetime,
        until: datetime,
        route: str | None = None,
        model: str | None = None,
    ) -> float | None:
        with self.platform.db.transaction() as s:
            return store.window_value(
                s,
                metric,
                workspace_id=workspace_id,
                since_s=int(since.timestamp()),
                until_s=int(until.timestamp()),
                route=route,
                model=model,
            )


def trace_fields(trace_store: Any, workspace_id: str, trace_id: str) -> dict[str, str] | None:
    """A trace's route, model and prompt version: those of its first gateway span, else
    the trace summary's. None while the trace is not stored."""
    summary = trace_store.trace(workspace_id, trace_id)
    if summary is None:
        return None
    prompt = ""
    page = trace_store.trace_spans(workspace_id, trace_id, cursor=None, limit=50)
    for span in page.items:
        value = span.attributes.get("shipyard.prompt")
        if value:
            prompt = str(value)
            break
    return {"route": summary.route or "", "model": summary.model or "", "prompt": prompt}
