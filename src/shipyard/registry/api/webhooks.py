"""Registry webhooks under /api/registry/webhooks, and the recent events with their
deliveries. Thin routes over `shipyard.registry.events`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from shipyard.errors import PermissionDenied
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.registry import events
from shipyard.registry.tables import WebhookRow

router = APIRouter(prefix="/api/registry", tags=["registry"])


class WebhookIn(Strict):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(default_factory=list, max_length=len(events.EVENTS))
    allow_internal: bool = Field(
        default=False, description="an internal address (platform administrators only)"
    )


class WebhookPublic(BaseModel):
    id: str
    url: str
    events: list[str]
    allow_internal: bool
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str  # signs the bodies; shown only here


class EventPublic(BaseModel):
    id: str
    event: str
    state: str
    payload: dict[str, Any]
    deliveries: list[dict[str, Any]]
    created_at: datetime
    sent_at: datetime | None


def public(row: WebhookRow) -> WebhookPublic:
    return WebhookPublic(
        id=row.id,
        url=row.url,
        events=list(row.events or []),
        allow_internal=row.allow_internal,
        enabled=row.enabled,
        created_at=row.created_at,
    )


@router.get("/webhooks", name="registry.webhooks.list")
def list_webhooks(ctx: Ctx = Authorized("registry:manage")) -> list[WebhookPublic]:
    with ctx.tx() as tx:
        return [public(r) for r in events.list_webhooks(tx.session, workspace_id=ctx.workspace_id)]


@router.post("/webhooks", status_code=201, name="registry.webhooks.create")
def create_webhook(body: WebhookIn, ctx: Ctx = Authorized("registry:manage")) -> WebhookCreated:
    """Events: any of `version.created`, `promotion.requested`, `promotion.approved`,
    `promotion.rejected`, `promotion.cancelled`, `alias.moved`, `alias.rolled_back`
    (none given: all of them)."""
    if body.allow_internal and not ctx.actor.can("registry:internal"):
        raise PermissionDenied("allow_internal: only a platform administrator may set it")
    with ctx.tx(target="registry-webhook") as tx:
        row, secret = events.create_webhook(
            tx.session,
            box=ctx.platform.box,
            workspace_id=ctx.workspace_id,
            url=body.url,
            events=body.events,
            allow_internal=body.allow_internal,
        )
        tx.target, tx.detail = f"webhook:{row.id}", row.url
        return WebhookCreated(**public(row).model_dump(), secret=secret)


@router.delete("/webhooks/{webhook_id}", status_code=204, name="registry.webhooks.delete")
def delete_webhook(webhook_id: str, ctx: Ctx = Authorized("registry:manage")) -> Response:
    with ctx.tx(target=f"webhook:{webhook_id}") as tx:
        events.delete_webhook(tx.session, workspace_id=ctx.workspace_id, webhook_id=webhook_id)
    return Response(status_code=204)


@router.get("/events", name="registry.events.list")
def list_events(
    ctx: Ctx = Authorized("registry:manage"),
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[EventPublic]:
    with ctx.tx() as tx:
        return [
            EventPublic(
                id=r.id,
                event=r.event,
                state=r.state,
                payload=dict(r.payload),
                deliveries=list(r.deliveries or []),
                created_at=r.created_at,
                sent_at=r.sent_at,
            )
            for r in events.recent(tx.session, workspace_id=ctx.workspace_id, limit=limit)
        ]
