"""A knowledge base's source table under /api/knowledge-bases/{name}/source: configure
(admins; the source is read once to check it), status, sync now, remove. See
`shipyard.retrieval.sync`."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity.stored import actor_json
from shipyard.retrieval import kb, source, sync
from shipyard.retrieval.api.knowledge_bases import _service
from shipyard.retrieval.schemas import NAME, SourceIn, SourcePublic
from shipyard.retrieval.tables import SourceRow
from shipyard.store import utcnow

router = APIRouter(prefix="/api/knowledge-bases", tags=["retrieval"])
KbName = Annotated[str, Path(pattern=NAME)]
CONTINUOUS_S = 1.0


def source_public(s: Session, row: SourceRow) -> SourcePublic:
    lag = None
    if row.last_success_started_at is not None:
        lag = max(0.0, (utcnow() - row.last_success_started_at).total_seconds())
    return SourcePublic(
        kind=row.kind,
        location=row.location_shown,
        table=row.table_name,
        id_column=row.id_column,
        text_column=row.text_column,
        updated_column=row.updated_column,
        metadata_columns=list(row.metadata_columns or []),
        mode=row.mode,
        interval_seconds=row.interval_seconds,
        allow_internal=row.allow_internal,
        status=row.status,
        error=row.error,
        syncs=row.syncs,
        rows=row.rows_seen,
        last_changed=row.rows_changed,
        last_deleted=row.rows_deleted,
        pending=sync.pending(s, row.kb_id),
        lag_seconds=lag,
        watermark=row.watermark,
        last_started_at=row.last_started_at,
        last_success_at=row.last_success_at,
        next_run_at=row.next_run_at,
        created_by=row.created_by,
    )


def _probe(spec: source.Spec) -> None:
    """Open the source and check its table and columns, or a 400 saying why not."""
    try:
        source.Reader(spec).close()
    except source.SourceError as exc:
        raise InvalidInput(f"source: {exc}") from None


@router.put("/{name}/source", name="kb.set_source")
async def set_source(
    name: KbName, body: SourceIn, ctx: Ctx = Authorized("kb:source")
) -> SourcePublic:
    """Follow a table: its rows become documents, kept in step on every sync."""
    platform = ctx.platform

    def configure() -> SourcePublic:
        location, shown = source.checked(body, ctx.actor, platform.settings.home)
        spec = source.Spec(
            kind=body.kind,
            location=location,
            allow_internal=body.allow_internal,
            table=body.table,
            id_column=body.id_column,
            text_column=body.text_column,
            updated_column=body.updated_column,
            metadata_columns=tuple(body.metadata_columns),
        )
        _probe(spec)
        with ctx.tx(target=f"kb:{name}") as tx:
            base = kb.get(tx.session, ctx.workspace_id, name)
            row = tx.session.get(SourceRow, base.id)
            if row is None:
                row = SourceRow(kb_id=base.id, syncs=0, rows_seen=0, rows_changed=0)
                row.rows_deleted, row.status, row.worker, row.error = 0, "idle", "", ""
                tx.session.add(row)
            elif (
                row.table_name,
                row.kind,
                row.updated_column,
                row.id_column,
                row.text_column,
                list(row.metadata_columns or []),
            ) != (
                body.table,
                body.kind,
                body.updated_column,
                body.id_column,
                body.text_column,
                list(body.metadata_columns),
            ) or platform.box.open(row.location_enc) != location:
                # another table, or other columns of it: read it whole at the next sync
                row.watermark, row.syncs = None, 0
            row.kind, row.location_enc, row.location_shown = (
                body.kind,
                platform.box.seal(location),
                shown,
            )
            row.allow_internal, row.table_name = body.allow_internal, body.table
            row.id_column, row.text_column = body.id_column, body.text_column
            row.updated_column, row.metadata_columns = body.updated_column, body.metadata_columns
            row.mode = body.mode
            row.interval_seconds = (
                CONTINUOUS_S if body.mode == "continuous" else body.interval_seconds
            )
            row.actor, row.created_by = actor_json(ctx.actor), ctx.actor.ref
            row.next_run_at = row.updated_at = utcnow()
            tx.detail = f"{body.kind} table {body.table} ({body.mode})"
            tx.session.flush()
            return source_public(tx.session, row)

    out = await anyio.to_thread.run_sync(configure)
    _service(ctx).syncer.poke()
    return out


def _source(ctx: Ctx, name: str, session: Session) -> SourceRow:
    row = session.get(SourceRow, kb.get(session, ctx.workspace_id, name).id)
    if row is None:
        raise NotFound(f"knowledge base '{name}' has no source table")
    return row


@router.get("/{name}/source", name="kb.source")
def get_source(name: KbName, ctx: Ctx = Authorized("kb:read")) -> SourcePublic:
    with ctx.tx() as tx:
        return source_public(tx.session, _source(ctx, name, tx.session))


@router.post("/{name}/sync", status_code=202, name="kb.sync")
def sync_now(name: KbName, ctx: Ctx = Authorized("kb:write")) -> SourcePublic:
    """Sync at once (a sync under way finishes first)."""
    with ctx.tx(target=f"kb:{name}") as tx:
        row = _source(ctx, name, tx.session)
        row.next_run_at = utcnow()
        out = source_public(tx.session, row)
    _service(ctx).syncer.poke()
    return out


@router.delete("/{name}/source", status_code=204, name="kb.delete_source")
def delete_source(name: KbName, ctx: Ctx = Authorized("kb:source")) -> Response:
    """Stop following the table (its documents stay until deleted)."""
    with ctx.tx(target=f"kb:{name}") as tx:
        tx.session.delete(_source(ctx, name, tx.session))
    return Response(status_code=204)
