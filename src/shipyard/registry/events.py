"""Registry events and the webhooks that receive them.

An event (`version.created`, `promotion.requested`, `promotion.approved`,
`promotion.rejected`, `promotion.cancelled`, `alias.moved`, `alias.rolled_back`) is
written to the outbox (`registry_events`) in the transaction of the change it reports,
so it exists exactly when the change does. The registry's service delivers the outbox:
each event to every enabled webhook of its workspace that wants it, signed
(`X-Shipyard-Signature: sha256=<HMAC of the body>`), through the alert notifier (the
outbound-address rules of providers, no redirects, retries). Delivery is at least once:
a replica claims an event before sending it, and a claim older than `CLAIM_SECONDS`
(the replica died) is taken again. The body's `id` lets a receiver drop a repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shipyard.crypto import SecretBox
from shipyard.errors import InvalidInput, NotFound
from shipyard.gateway.providers.urlcheck import check_base_url
from shipyard.registry.tables import EventRow, WebhookRow
from shipyard.store import Database, new_id, utcnow
from shipyard.tracing.notify import Notifier

log = logging.getLogger("shipyard.registry")

EVENTS = (
    "version.created",
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
    "promotion.cancelled",
    "alias.moved",
    "alias.rolled_back",
)
MAX_WEBHOOKS = 20  # a workspace
CLAIM_SECONDS = 120.0
BATCH = 50


def emit(s: Session, *, workspace_id: str, event: str, data: dict[str, Any]) -> None:
    """Queue `event` in the caller's transaction."""
    assert event in EVENTS, event
    row_id = new_id("evt")
    at = utcnow()
    payload = {
        "id": row_id,
        "event": event,
        "at": at.isoformat(),
        "workspace_id": workspace_id,
        "data": data,
    }
    s.add(
        EventRow(
            id=row_id,
            workspace_id=workspace_id,
            event=event,
            payload=payload,
            state="pending",
            deliveries=[],
            created_at=at,
        )
    )


# Webhooks --------------------------------------------------------------------------------


def create_webhook(
    s: Session,
    *,
    box: SecretBox,
    workspace_id: str,
    url: str,
    events: list[str],
    allow_internal: bool,
) -> tuple[WebhookRow, str]:
    """The new webhook and its signing secret (shown once; only its sealed form is
    kept). The URL is checked as a provider's is (internal and metadata addresses are
    refused unless `allow_internal`, which the caller has checked the actor may set)."""
    for i, name in enumerate(events):
        if name not in EVENTS:
            raise InvalidInput(f"events.{i}: '{name[:64]}' is not one of {', '.join(EVENTS)}")
    if len(list_webhooks(s, workspace_id=workspace_id)) >= MAX_WEBHOOKS:
        raise InvalidInput(f"url: a workspace has at most {MAX_WEBHOOKS} registry webhooks")
    try:
        checked = check_base_url(url, allow_internal=allow_internal)
    except InvalidInput as exc:
        raise InvalidInput("url: " + exc.detail.removeprefix("base_url: "), param="url") from None
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = WebhookRow(
        id=new_id("hook"),
        workspace_id=workspace_id,
        url=checked,
        events=sorted(set(events)),
        secret_enc=box.seal(secret),
        allow_internal=allow_internal,
        enabled=True,
    )
    s.add(row)
    s.flush()
    return row, secret


def list_webhooks(s: Session, *, workspace_id: str) -> list[WebhookRow]:
    query = select(WebhookRow).where(WebhookRow.workspace_id == workspace_id)
    return list(s.scalars(query.order_by(WebhookRow.created_at)))


def delete_webhook(s: Session, *, workspace_id: str, webhook_id: str) -> None:
    row = s.get(WebhookRow, webhook_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"webhook '{webhook_id[:64]}' not found")
    s.delete(row)


def recent(s: Session, *, workspace_id: str, limit: int = 100) -> list[EventRow]:
    query = select(EventRow).where(EventRow.workspace_id == workspace_id)
    return list(s.scalars(query.order_by(EventRow.created_at.desc()).limit(limit)))


# Delivery --------------------------------------------------------------------------------


class Outbox:
    """Delivers pending events; `wake()` after a change to send at once."""

    def __init__(self, db: Database, box: SecretBox, *, interval: float = 1.0) -> None:
        self.db, self.box, self.interval = db, box, interval
        self.notifier = Notifier()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.send_pending():
                    pass
            except Exception:  # noqa: BLE001 - keep delivering; the events stay pending
                log.warning("registry webhook delivery failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()

    async def close(self) -> None:
        await self.notifier.close()

    def _claim(self) -> list[tuple[EventRow, list[tuple[str, str, bool]]]]:
        """Claim a batch of pending events (and stale claims), with their targets:
        (url, secret, allow_internal)."""
        now = utcnow()
        stale = now - timedelta(seconds=CLAIM_SECONDS)
        claimed = []
        with self.db.transaction() as s:
            rows = s.scalars(
                select(EventRow)
                .where(
                    or_(
                        EventRow.state == "pending",
                        and_(EventRow.state == "sending", EventRow.sent_at < stale),
                    )
                )
                .order_by(EventRow.created_at)
                .limit(BATCH)
            ).all()
            hooks: dict[str, list[WebhookRow]] = {}
            for row in rows:
                won = s.execute(
                    update(EventRow)
                    .where(EventRow.id == row.id, EventRow.state == row.state)
                    .values(state="sending", sent_at=now)
                )
                if not won.rowcount:  # type: ignore[attr-defined]  # CursorResult
                    continue  # another replica has it
                if row.workspace_id not in hooks:
                    hooks[row.workspace_id] = [
                        h for h in list_webhooks(s, workspace_id=row.workspace_id) if h.enabled
                    ]
                targets = [
                    (h.url, self.box.open(h.secret_enc), h.allow_internal)
                    for h in hooks[row.workspace_id]
                    if not h.events or row.event in h.events
                ]
                s.expunge(row)
                claimed.append((row, targets))
        return claimed

    async def send_pending(self) -> int:
        """Deliver one batch; how many events it held."""
        batch = await asyncio.to_thread(self._claim)
        for row, targets in batch:
            body = orjson.dumps(row.payload)
            results = await asyncio.gather(
                *(
                    self.notifier.deliver(
                        url,
                        body,
                        secret=secret,
                        event=row.event,
                        allow_internal=internal,
                        agent="Shipyard-Registry",
                    )
                    for url, secret, internal in targets
                )
            )
            ok = all(d.status == "delivered" for d in results)
            await asyncio.to_thread(
                self._done, row.id, "delivered" if ok else "failed", [d.as_dict() for d in results]
            )
        return len(batch)

    def _done(self, event_id: str, state: str, deliveries: list[dict[str, Any]]) -> None:
        with self.db.transaction() as s:
            s.execute(
                update(EventRow)
                .where(EventRow.id == event_id)
                .values(state=state, deliveries=deliveries, sent_at=utcnow())
            )
