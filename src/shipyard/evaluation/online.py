"""Online evaluation: scorers applied on a schedule to a sample of live traces.

Each rule names a route (or every route), a sampling rate, filters and scorers. On its
interval the evaluator looks at the traces that started in the window since the last
one (up to `SETTLE_S` ago, so spans still arriving are in), keeps the sampled ones
(deterministic on the trace id: the same trace is in or out on every replica), scores
their input and output, and writes each score as feedback on the trace (source
`evaluation`, name `<rule>/<scorer>`, the reason as its comment). So online scores
show on the trace page, aggregate into feedback metrics per route, model and prompt
version, and drive alert rules (`online_score_mean`).

Traces stored later than `SETTLE_S` after they started are not looked at again; a
window holds at most `MAX_TRACES` traces (the rest are counted as skipped)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, NotFound
from shipyard.evaluation.datasets import inputs_of
from shipyard.evaluation.runner import score_all
from shipyard.evaluation.runs import actor_json, checked_scorers, loaded
from shipyard.evaluation.schemas import ScorerIn
from shipyard.evaluation.tables import OnlineRuleRow
from shipyard.feedback.items import FeedbackItem
from shipyard.identity.actor import Actor
from shipyard.identity.stored import still_valid
from shipyard.inputs import Strict
from shipyard.plugins import Case, Plugins
from shipyard.store import new_id, utcnow
from shipyard.tracing.spans import TraceQuery

if TYPE_CHECKING:
    from shipyard.platform import Platform

log = logging.getLogger("shipyard.evaluation.online")
SETTLE_S = 5.0
MAX_TRACES = 5000
RULE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$"


class Filters(Strict):
    status: Literal["ok", "error"] | None = None
    model: str | None = Field(default=None, max_length=256)
    min_duration_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class OnlineRuleIn(Strict):
    name: str = Field(pattern=RULE)
    route: str = Field(default="", max_length=128, description='"": every route')
    sample_rate: float = Field(default=0.1, gt=0, le=1)
    scorers: list[ScorerIn] = Field(min_length=1, max_length=10)
    filters: Filters = Field(default_factory=Filters)
    interval_s: int = Field(default=60, ge=1, le=86_400)
    enabled: bool = True


class OnlineRuleUpdate(Strict):
    sample_rate: float | None = Field(default=None, gt=0, le=1)
    interval_s: int | None = Field(default=None, ge=1, le=86_400)
    enabled: bool | None = None
    scorers: list[ScorerIn] | None = Field(default=None, min_length=1, max_length=10)


def sampled(trace_id: str, rate: float) -> bool:
    """Whether the trace is in a `rate` sample: the same answer everywhere, always."""
    digest = hashlib.blake2b(trace_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def create(
    s: Session, *, plugins: Plugins, actor: Actor, body: OnlineRuleIn, now_ns: int
) -> OnlineRuleRow:
    if s.scalars(
        select(OnlineRuleRow.id).where(
            OnlineRuleRow.workspace_id == actor.workspace_id, OnlineRuleRow.name == body.name
        )
    ).first():
        raise Conflict(f"online rule '{body.name}' already exists", param="name")
    row = OnlineRuleRow(
        id=new_id("onl"),
        workspace_id=actor.workspace_id,
        name=body.name,
        route=body.route,
        sample_rate=body.sample_rate,
        scorers=checked_scorers(plugins, body.scorers),
        filters=body.filters.model_dump(exclude_none=True),
        interval_s=body.interval_s,
        enabled=body.enabled,
        actor=actor_json(actor),
        watermark_ns=now_ns,  # live traces from now on
        created_by=actor.ref,
    )
    s.add(row)
    s.flush()
    return row


def get(s: Session, workspace_id: str, name: str) -> OnlineRuleRow:
    row = s.scalars(
        select(OnlineRuleRow).where(
            OnlineRuleRow.workspace_id == workspace_id, OnlineRuleRow.name == name[:64]
        )
    ).first()
    if row is None:
        raise NotFound(f"no online evaluation rule '{name[:64]}' in this workspace")
    return row


def due(s: Session, now: datetime) -> list[OnlineRuleRow]:
    rows = s.scalars(select(OnlineRuleRow).where(OnlineRuleRow.enabled.is_(True))).all()
    return [
        r
        for r in rows
        if r.last_run_at is None or r.last_run_at + timedelta(seconds=r.interval_s) <= now
    ]


class OnlineEvaluator:
    """Runs due rules (from the evaluation service's loop, or `run_now`)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def tick(self) -> int:
        rules = await asyncio.to_thread(self._due)
        total = 0
        for rule_id in rules:
            try:
                total += await self.run_rule(rule_id)
            except Exception as exc:  # noqa: BLE001 - one rule's failure skips only it
                log.exception("online evaluation rule %s failed", rule_id)
                await asyncio.to_thread(self._note, rule_id, f"{type(exc).__name__}: {exc}")
        return total

    def _due(self) -> list[str]:
        with self.platform.db.transaction() as s:
            return [r.id for r in due(s, utcnow())]

    def _note(self, rule_id: str, error: str) -> None:
        with self.platform.db.transaction() as s:
            row = s.get(OnlineRuleRow, rule_id)
            if row is not None:
                row.last_error, row.last_run_at = error[:2000], utcnow()

    async def run_rule(self, rule_id: str, *, until_ns: int | None = None) -> int:
        """Score the rule's window; the number of traces scored."""
        tracing = self.platform.services.get("tracing")
        store = getattr(tracing, "store", None)
        feedback = self.platform.services.get("feedback")
        if store is None or feedback is None:
            return 0

        def load() -> tuple[OnlineRuleRow, Actor | str]:
            with self.platform.db.transaction() as s:
                row = s.get(OnlineRuleRow, rule_id)
                if row is None:
                    raise NotFound("the rule is gone")
                actor = still_valid(s, row.actor, row.workspace_id, self.platform.grants)
                s.expunge(row)
                return row, actor

        rule, actor = await asyncio.to_thread(load)
        end = until_ns if until_ns is not None else time.time_ns() - int(SETTLE_S * 1e9)
        if isinstance(actor, str):
            await asyncio.to_thread(self._note, rule_id, actor)
            return 0
        if end <= rule.watermark_ns:
            return 0
        traces = await asyncio.to_thread(self._window, store, rule, end)
        cases, picked = [], []
        for t in traces:
            cases.append(
                Case(
                    inputs=inputs_of(t.input),
                    expected=None,
                    output=t.output,
                    metadata={"route": t.route, "model": t.model, "trace_id": t.trace_id},
                    latency_ms=t.duration_ms,
                    cost_usd=t.cost_usd,
                )
            )
            picked.append(t)
        scorers = loaded(self.platform.plugins, rule.scorers)
        verdicts = await score_all(self.platform, scorers, cases, actor, where=f"rule {rule.name}")
        items = []
        at = time.time_ns()
        for t, scores in zip(picked, verdicts, strict=True):
            for label, score in scores.items():
                if score.value is None:
                    continue
                items.append(
                    FeedbackItem(
                        id=new_id("fb"),
                        workspace_id=rule.workspace_id,
                        trace_id=t.trace_id,
                        span_id="",
                        name=f"{rule.name}/{label}"[:64],
                        source="evaluation",
                        author=f"evaluation:{rule.name}",
                        at_ns=at,
                        score=float(score.value),
                        comment=score.reason[:10_000] or None,
                    )
                )
        if items:
            feedback.submit(items)

        def advance() -> None:
            with self.platform.db.transaction() as s:
                row = s.get(OnlineRuleRow, rule_id)
                if row is not None:
                    row.watermark_ns = max(row.watermark_ns, end)
                    row.scored += len(picked)
                    row.last_run_at, row.last_error = utcnow(), ""

        await asyncio.to_thread(advance)
        return len(picked)

    def _window(self, store: Any, rule: OnlineRuleRow, end_ns: int) -> list[Any]:
        f = rule.filters or {}
        query = TraceQuery(
            since_ns=rule.watermark_ns,
            until_ns=end_ns,
            route=rule.route or None,
            model=f.get("model"),
            status=f.get("status"),
            min_duration_ms=f.get("min_duration_ms"),
            limit=500,
        )
        out: list[Any] = []
        seen = 0
        while seen < MAX_TRACES:
            page = store.traces(rule.workspace_id, query)
            for t in page.items:
                seen += 1
                if sampled(t.trace_id, rule.sample_rate):
                    out.append(t)
            if not page.next_cursor:
                break
            query = TraceQuery(**{**_fields(query), "cursor": page.next_cursor})
        return out


def _fields(query: TraceQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}
