"""Writing and reading the audit log. Entries never carry secrets: actors are named by
e-mail or key name and id, targets by resource id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from shipyard.audit.models import AuditEvent
from shipyard.identity.actor import Actor
from shipyard.store import Database

log = logging.getLogger("shipyard.audit")


@dataclass(slots=True)
class Entry:
    actor: str
    actor_kind: str
    action: str
    outcome: str  # success | denied | failed
    status: int
    workspace_id: str | None = None
    target: str = ""
    client_addr: str = ""
    detail: str = ""

    def row(self) -> AuditEvent:
        return AuditEvent(
            actor=self.actor[:200],
            actor_kind=self.actor_kind,
            action=self.action[:100],
            target=self.target[:200],
            workspace_id=self.workspace_id,
            client_addr=self.client_addr[:64],
            outcome=self.outcome,
            status=self.status,
            detail=self.detail[:500],
        )


def record(s: Session, entry: Entry) -> None:
    """Record inside the caller's transaction (commits or rolls back with the change)."""
    s.add(entry.row())


def record_now(db: Database, entry: Entry) -> None:
    """Record in a transaction of its own (denied and failed requests)."""
    with db.transaction() as s:
        s.add(entry.row())


def refusal(
    *,
    actor: Actor | None,
    action: str,
    status: int,
    target: str = "",
    client_addr: str = "",
    detail: str = "",
) -> Entry:
    """The entry for a request that was denied (401, 403) or failed: one shape for the
    API, the gateway and the UI."""
    return Entry(
        actor=actor.ref if actor else "anonymous",
        actor_kind=actor.kind if actor else "anonymous",
        action=action[:100],
        outcome="denied" if status in (401, 403) else "failed",
        status=status,
        workspace_id=actor.workspace_id if actor else None,
        target=target,
        client_addr=client_addr,
        detail=detail,
    )


def record_refusal(db: Database, entry: Entry) -> None:
    """Record a refusal; never raises (the reply must still go out)."""
    try:
        record_now(db, entry)
    except Exception:  # noqa: BLE001
        log.exception("could not write audit entry")


@dataclass(slots=True)
class AuditQuery:
    workspace_id: str
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100
    include_unscoped: bool = False  # entries of no workspace; platform admins only


def _select(q: AuditQuery) -> Select[AuditEvent]:
    scope = AuditEvent.workspace_id == q.workspace_id
    if q.include_unscoped:
        scope = or_(scope, AuditEvent.workspace_id.is_(None))
    stmt = select(AuditEvent).where(scope)
    if q.actor:
        stmt = stmt.where(AuditEvent.actor.contains(q.actor))
    if q.action:
        stmt = stmt.where(AuditEvent.action.startswith(q.action))
    if q.outcome:
        stmt = stmt.where(AuditEvent.outcome == q.outcome)
    if q.since:
        stmt = stmt.where(AuditEvent.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEvent.at < q.until)
    if q.before_id:
        stmt = stmt.where(AuditEvent.id < q.before_id)
    return stmt.order_by(AuditEvent.id.desc())


def search(s: Session, q: AuditQuery) -> list[AuditEvent]:
    return list(s.scalars(_select(q).limit(q.limit)))


def export(db: Database, q: AuditQuery, batch: int = 500) -> Iterator[AuditEvent]:
    """Every matching entry, newest first, read in batches."""
    cursor = q.before_id
    while True:
        page = replace(q, before_id=cursor, limit=batch)
        with db.transaction() as s:
            rows = search(s, page)
        yield from rows
        if len(rows) < batch:
            return
        cursor = rows[-1].id
