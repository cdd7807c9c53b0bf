"""Alert rules: a metric of the trace store's roll-ups (or a drift score) over a window,
compared with a threshold, evaluated periodically; a webhook notification when a rule
fires and when it resolves.

    ok ──condition holds──► pending ──held for for_seconds──► firing ──condition ends──► ok
         ◄──condition ends──┘          (history row, "firing")        (row resolved, "resolved")

The evaluation runs on a thread every `AlertEngine.interval` seconds; each transition is
a compare-and-set on the rule's state, so replicas sharing the database notify once.
Notifications (`shipyard.tracing.notify`) go out as tasks on the event loop, retried with
backoff, and their outcome is written to the history row. A silenced rule still moves
through its states; its notifications are recorded as "silenced", not sent.

Window metrics read the per-minute roll-ups: the window starts at the minute that holds
`now - window_seconds`. Sums (requests, tokens, cost) and the error rate are exact;
a percentile is the worst minute's in the window. A drift metric compares the window
with the one just before it (`shipyard.tracing.drift`); it needs a route, and is
computed once per five-minute slot (it reads two samples and may embed them)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shipyard.gateway.providers.urlcheck import check_base_url
from shipyard.store import new_id, utcnow
from shipyard.tracing.alert_tables import AlertEventRow, AlertRuleRow
from shipyard.tracing.drift import DRIFT_METRICS, Drift
from shipyard.tracing.notify import Delivery, Notice, Notifier
from shipyard.tracing.spans import MetricPoint, MetricsQuery

if TYPE_CHECKING:
    from shipyard.crypto import SecretBox
    from shipyard.platform import Platform
    from shipyard.tracing.service import Tracing

log = logging.getLogger("shipyard.tracing.alerts")

INTERVAL = 30.0  # seconds between evaluations
ROLLUP_METRICS = (
    "requests",
    "error_rate",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "ttft_p90_ms",
    "cost_usd",
    "input_tokens",
    "output_tokens",
)
METRICS = ROLLUP_METRICS + tuple(DRIFT_METRICS)
COMPARATORS = (">", ">=", "<", "<=")
MAX_TARGETS = 10
MINUTE_NS = 60_000_000_000
DRIFT_EVERY_NS = 300 * 1_000_000_000  # a drift metric is computed again this often


@dataclass(frozen=True)
class Target:
    url: str
    format: str = "json"  # "json" (HMAC-signed) or "slack"


@dataclass(frozen=True)
class RuleIn:
    name: str
    metric: str
    window_seconds: int
    comparator: str
    threshold: float
    targets: Sequence[Target]
    for_seconds: int = 0
    route: str | None = None
    model: str | None = None
    key_id: str | None = None
    enabled: bool = True
    allow_internal: bool = False


def holds(value: float | None, comparator: str, threshold: float) -> bool:
    if value is None:  # no data: nothing to alert on
        return False
    if comparator == ">":
        return value > threshold
    if comparator == ">=":
        return value >= threshold
    if comparator == "<":
        return value < threshold
    return value <= threshold


def window_value(points: Sequence[MetricPoint], metric: str) -> float | None:
    """A roll-up metric over the points of a window (None: no calls, or no figure)."""
    requests = sum(p.requests for p in points)
    if metric == "requests":
        return float(requests)
    if metric in ("cost_usd", "input_tokens", "output_tokens"):
        return float(sum(getattr(p, metric) for p in points))
    if not requests:
        return None
    if metric == "error_rate":
        return sum(p.errors for p in points) / requests
    found = [v for p in points if p.requests and (v := getattr(p, metric)) is not None]
    return max(found) if found else None


# rules: keyword-only functions over a session ---------------------------------------


def metric_names(platform: Platform) -> tuple[str, ...]:
    """What alert rules can take: the trace store's metrics, drift scores, and the
    metrics other capabilities offer (`MetricSource`)."""
    extra = (m for source in platform.metric_sources for m in source.metrics)
    return METRICS + tuple(m for m in extra if m not in METRICS)


def _check(body: RuleIn, *, platform: bool, known: Sequence[str]) -> list[dict[str, str]]:
    if body.metric not in known:
        raise InvalidInput(f"metric: one of {', '.join(known)}", param="metric")
    if body.comparator not in COMPARATORS:
        raise InvalidInput(f"comparator: one of {' '.join(COMPARATORS)}", param="comparator")
    if body.metric in DRIFT_METRICS and not body.route:
        raise InvalidInput("route: a drift metric is computed per route; name one", param="route")
    if body.allow_internal and not platform:
        raise PermissionDenied(
            "allow_internal: only a platform administrator may allow internal addresses"
        )
    if not body.targets or len(body.targets) > MAX_TARGETS:
        raise InvalidInput(f"targets: between 1 and {MAX_TARGETS}", param="targets")
    out = []
    for i, target in enumerate(body.targets):
        if target.format not in ("json", "slack"):
            raise InvalidInput(f"targets.{i}.format: 'json' or 'slack'", param=f"targets.{i}")
        try:
            url = check_base_url(target.url, allow_internal=body.allow_internal)
        except InvalidInput as exc:
            detail = exc.detail.removeprefix("base_url: ").replace("; use api_key", "")
            raise InvalidInput(f"targets.{i}.url: {detail}", param=f"targets.{i}.url") from None
        out.append({"url": url, "format": target.format})
    return out


def create_rule(
    s: Session,
    *,
    box: SecretBox,
    workspace_id: str,
    body: RuleIn,
    platform: bool,
    known: Sequence[str] = METRICS,
) -> tuple[AlertRuleRow, str]:
    """The new rule and its signing secret (shown once: only its sealed form is kept)."""
    targets = _check(body, platform=platform, known=known)
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = AlertRuleRow(
        id=new_id("alr"),
        workspace_id=workspace_id,
        secret_enc=box.seal(secret),
        state="ok",
        created_at=utcnow(),
    )
    _assign(row, body, targets)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"name: an alert rule named '{body.name}' exists") from None
    return row, secret


def update_rule(
    s: Session,
    *,
    workspace_id: str,
    rule_id: str,
    body: RuleIn,
    platform: bool,
    known: Sequence[str] = METRICS,
) -> AlertRuleRow:
    """Replace a rule's definition (its secret and history stay); its state starts over
    (an open firing is closed without a notification)."""
    row = get_rule(s, workspace_id=workspace_id, rule_id=rule_id)
    # keeping the internal targets a platform administrator allowed is no escalation;
    # pointing them anywhere else is
    kept = row.allow_internal and [t.url.strip().rstrip("/") for t in body.targets] == [
        t["url"] for t in row.targets
    ]
    targets = _check(body, platform=platform or kept, known=known)
    _close_open(s, row)
    _assign(row, body, targets)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"name: an alert rule named '{body.name}' exists") from None
    return row


def _assign(row: AlertRuleRow, body: RuleIn, targets: list[dict[str, str]]) -> None:
    row.name = body.name
    row.metric = body.metric
    row.route, row.model, row.key_id = body.route, body.model, body.key_id
    row.window_seconds = body.window_seconds
    row.comparator = body.comparator
    row.threshold = body.threshold
    row.for_seconds = body.for_seconds
    row.enabled = body.enabled
    row.targets = targets
    row.allow_internal = body.allow_internal
    row.updated_at = utcnow()


def _close_open(s: Session, row: AlertRuleRow) -> None:
    if row.event_id is not None:
        event = s.get(AlertEventRow, row.event_id)
        if event is not None and event.resolved_at is None:
            event.resolved_at = utcnow()
    row.state, row.pending_since, row.event_id = "ok", None, None


def get_rule(s: Session, *, workspace_id: str, rule_id: str) -> AlertRuleRow:
    row = s.get(AlertRuleRow, rule_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no alert rule '{rule_id}'")
    return row


def list_rules(s: Session, *, workspace_id: str) -> list[AlertRuleRow]:
    q = select(AlertRuleRow).where(AlertRuleRow.workspace_id == workspace_id)
    return list(s.scalars(q.order_by(AlertRuleRow.name)))


def delete_rule(s: Session, *, workspace_id: str, rule_id: str) -> AlertRuleRow:
    """The rule and its history (the audit trail keeps the deletion)."""
    row = get_rule(s, workspace_id=workspace_id, rule_id=rule_id)
    s.execute(delete(AlertEventRow).where(AlertEventRow.rule_id == row.id))
    s.delete(row)
    return row


def rotate_secret(
    s: Session, *, box: SecretBox, workspace_id: str, rule_id: str
) -> tuple[AlertRuleRow, str]:
    """A new signing secret for the rule (shown once); the old one signs nothing more."""
    row = get_rule(s, workspace_id=workspace_id, rule_id=rule_id)
    secret = "whsec_" + secrets.token_urlsafe(32)
    row.secret_enc = box.seal(secret)
    row.updated_at = utcnow()
    return row, secret


def silence(s: Session, *, workspace_id: str, rule_id: str, until: datetime | None) -> AlertRuleRow:
    row = get_rule(s, workspace_id=workspace_id, rule_id=rule_id)
    row.silenced_until = until
    row.updated_at = utcnow()
    return row


def history(
    s: Session,
    *,
    workspace_id: str,
    rule_id: str | None = None,
    before: datetime | None = None,
    limit: int = 100,
) -> list[AlertEventRow]:
    q = select(AlertEventRow).where(AlertEventRow.workspace_id == workspace_id)
    if rule_id is not None:
        q = q.where(AlertEventRow.rule_id == rule_id)
    if before is not None:
        q = q.where(AlertEventRow.fired_at < before)
    q = q.order_by(AlertEventRow.fired_at.desc(), AlertEventRow.id.desc()).limit(limit)
    return list(s.scalars(q))


def notice_for(row: AlertRuleRow, box: SecretBox, event: AlertEventRow, kind: str) -> Notice:
    return Notice(
        event=kind,
        event_id=event.id,
        workspace_id=row.workspace_id,
        rule_id=row.id,
        rule_name=row.name,
        metric=row.metric,
        comparator=row.comparator,
        threshold=row.threshold,
        window_seconds=row.window_seconds,
        for_seconds=row.for_seconds,
        filter={k: v for k in ("route", "model", "key_id") if (v := getattr(row, k))},
        value=event.value if kind != "resolved" else event.resolved_value,
        at=utcnow(),
        targets=tuple((t["url"], t["format"]) for t in row.targets),
        secret=box.open(row.secret_enc),
        allow_internal=row.allow_internal,
    )


def record_deliveries(s: Session, event_id: str, deliveries: Sequence[Delivery]) -> None:
    event = s.get(AlertEventRow, event_id)
    if event is None:  # the rule was deleted meanwhile
        return
    done = [*event.deliveries, *(d.as_dict() for d in deliveries)]
    event.deliveries = done
    event.attempts = sum(int(d.get("attempts", 0)) for d in done)
    sent = [d for d in done if d["status"] != "silenced"]
    if not sent:
        event.delivery_status = "silenced"
    else:
        event.delivery_status = (
            "delivered" if all(d["status"] == "delivered" for d in sent) else "failed"
        )


# evaluation -----------------------------------------------------------------------------


class AlertEngine:
    """Evaluates every enabled rule every `interval` seconds and sends notifications."""

    def __init__(self, tracing: Tracing, *, interval: float = INTERVAL) -> None:
        self.tracing = tracing
        self.db = tracing.platform.db
        self.box = tracing.platform.box
        self.interval = interval
        self.notifier = Notifier()
        self._drift: Drift | None = None
        self._drift_values: dict[str, tuple[tuple[Any, ...], float | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None  # the app's, once started

    @property
    def drift(self) -> Drift:
        store = self.tracing.store
        assert store is not None, "the trace store is not open"
        if self._drift is None or self._drift.store is not store:
            self._drift = Drift(store)
        return self._drift

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = self.loop.create_task(self._run(), name="shipyard-alerts")

    def wake(self) -> None:
        """Evaluate now (and then every `interval`)."""
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        await self.notifier.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.evaluate()
            except Exception:  # a bad round must not end the loop
                log.exception("alert evaluation failed")

    async def evaluate(self, now: datetime | None = None) -> list[Notice]:
        """One round over every enabled rule; the notifications it sends (tests await
        `drain()` for their outcome)."""
        notices = await asyncio.to_thread(self._evaluate, now or utcnow())
        for notice in notices:
            self._send(notice)
        return notices

    async def drain(self) -> None:
        """Wait for the notifications under way (with their retries)."""
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)

    def _send(self, notice: Notice) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(notice))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, notice: Notice) -> None:
        deliveries = await self.notifier.send(notice)
        await asyncio.to_thread(self._record, notice.event_id, deliveries)

    def _record(self, event_id: str, deliveries: Sequence[Delivery]) -> None:
        with self.db.transaction() as s:
            record_deliveries(s, event_id, deliveries)

    async def test(self, rule_id: str, workspace_id: str) -> AlertEventRow:
        """Send a test notification now; its history row, with the outcome."""

        def begin() -> tuple[str, Notice]:
            with self.db.transaction() as s:
                row = get_rule(s, workspace_id=workspace_id, rule_id=rule_id)
                event = AlertEventRow(
                    id=new_id("ale"),
                    rule_id=row.id,
                    workspace_id=row.workspace_id,
                    kind="test",
                    fired_at=utcnow(),
                    value=row.last_value,
                    threshold=row.threshold,
                    delivery_status="pending",
                    attempts=0,
                    deliveries=[],
                )
                s.add(event)
                return event.id, notice_for(row, self.box, event, "test")

        event_id, notice = await asyncio.to_thread(begin)
        deliveries = await self.notifier.send(notice)

        def finish() -> AlertEventRow:
            with self.db.transaction() as s:
                record_deliveries(s, event_id, deliveries)
                event = s.get(AlertEventRow, event_id)
                assert event is not None
                s.flush()  # an expunged row's changes are never written
                s.expunge(event)
                return event

        return await asyncio.to_thread(finish)

    # on a thread ----------------------------------------------------------------------

    def _evaluate(self, now: datetime) -> list[Notice]:
        with self.db.transaction() as s:
            rules = list(s.scalars(select(AlertRuleRow).where(AlertRuleRow.enabled.is_(True))))
            for row in rules:
                s.expunge(row)
        ids = {row.id for row in rules}
        self._drift_values = {k: v for k, v in self._drift_values.items() if k in ids}
        notices: list[Notice] = []
        for row in rules:
            try:
                value = self.value(row, now)
            except Exception:
                log.exception("alert rule %s: the metric cannot be computed", row.id)
                continue
            try:
                notice = self._step(row, value, now)
            except Exception:
                log.exception("alert rule %s: the evaluation failed", row.id)
                continue
            if notice is not None:
                notices.append(notice)
        return notices

    def value(self, row: AlertRuleRow, now: datetime) -> float | None:
        """The rule's metric over its window ending at `now`."""
        store = self.tracing.store
        if store is None:
            return None
        until = int(now.timestamp() * 1e9)
        since = until - row.window_seconds * 1_000_000_000
        if row.metric in DRIFT_METRICS:
            # a drift score reads two samples (and may embed them): once per DRIFT_EVERY
            key = (row.metric, row.route, row.window_seconds, until // DRIFT_EVERY_NS)
            cached = self._drift_values.get(row.id)
            if cached is not None and cached[0] == key:
                return cached[1]
            report = self.drift.report(
                row.workspace_id,
                row.route or "",
                (since - row.window_seconds * 1_000_000_000, since),
                (since, until),
                embeddings=row.metric == "drift_embedding_distance",
            )
            self._drift_values[row.id] = (key, report.value(row.metric))
            return report.value(row.metric)
        for source in self.tracing.platform.metric_sources:
            if row.metric in source.metrics:  # another capability's (feedback scores)
                return source.value(
                    row.metric,
                    workspace_id=row.workspace_id,
                    since=now - timedelta(seconds=row.window_seconds),
                    until=now,
                    route=row.route,
                    model=row.model,
                )
        points = store.metrics(
            row.workspace_id,
            MetricsQuery(
                since_ns=since,
                until_ns=until,
                bucket_seconds=60,
                route=row.route,
                model=row.model,
                key_id=row.key_id,
            ),
        )
        return window_value(points, row.metric)

    def _step(self, row: AlertRuleRow, value: float | None, now: datetime) -> Notice | None:
        """Move one rule's state; the notification to send, if any."""
        on = holds(value, row.comparator, row.threshold)
        with self.db.transaction() as s:
            changes: dict[str, Any] = {"last_value": value, "evaluated_at": now}
            state, pending_since = row.state, row.pending_since
            if on and state == "ok":
                state, pending_since = "pending", now
                changes.update(state=state, pending_since=now)
            if on and state == "pending":
                held = now - (pending_since or now) >= timedelta(seconds=row.for_seconds)
                if held:
                    return self._fire(s, row, value, now, changes)
            if not on and state == "pending":
                changes.update(state="ok", pending_since=None)
            if not on and state == "firing":
                return self._resolve(s, row, value, now, changes)
            self._cas(s, row, changes)
        return None

    def _cas(self, s: Session, row: AlertRuleRow, changes: dict[str, Any]) -> bool:
        """Apply the changes if the rule is still in the state this round read."""
        result = s.execute(
            update(AlertRuleRow)
            .where(AlertRuleRow.id == row.id, AlertRuleRow.state == row.state)
            .values(**changes)
        )
        return bool(getattr(result, "rowcount", 0))

    def _silenced(self, row: AlertRuleRow, now: datetime) -> bool:
        return row.silenced_until is not None and row.silenced_until > now

    def _fire(
        self,
        s: Session,
        row: AlertRuleRow,
        value: float | None,
        now: datetime,
        changes: dict[str, Any],
    ) -> Notice | None:
        silenced = self._silenced(row, now)
        event = AlertEventRow(
            id=new_id("ale"),
            rule_id=row.id,
            workspace_id=row.workspace_id,
            kind="alert",
            fired_at=now,
            value=value,
            threshold=row.threshold,
            silenced=silenced,
            delivery_status="silenced" if silenced else "pending",
            attempts=0,
            deliveries=[],
        )
        changes.update(state="firing", event_id=event.id, pending_since=None)
        if not self._cas(s, row, changes):
            return None  # another replica moved it first
        s.add(event)
        if silenced:
            event.deliveries = [_silenced_delivery(row, "firing", now)]
            return None
        return notice_for(row, self.box, event, "firing")

    def _resolve(
        self,
        s: Session,
        row: AlertRuleRow,
        value: float | None,
        now: datetime,
        changes: dict[str, Any],
    ) -> Notice | None:
        changes.update(state="ok", event_id=None, pending_since=None)
        if not self._cas(s, row, changes):
            return None
        event = s.get(AlertEventRow, row.event_id) if row.event_id else None
        if event is None:
            return None
        event.resolved_at = now
        event.resolved_value = value
        if self._silenced(row, now):
            event.deliveries = [*event.deliveries, _silenced_delivery(row, "resolved", now)]
            if event.delivery_status == "pending":
                event.delivery_status = "silenced"
            return None
        return notice_for(row, self.box, event, "resolved")


def _silenced_delivery(row: AlertRuleRow, kind: str, now: datetime) -> dict[str, Any]:
    return {"event": kind, "url": "", "status": "silenced", "attempts": 0, "at": now.isoformat()}
