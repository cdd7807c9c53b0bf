"""Table-synced knowledge bases: a table in another SQL database (a SQLite file, or
PostgreSQL by URL) kept in step with a knowledge base. Each row with text is one
document, `row-<id>`, whose text is the row's text column and whose metadata is
`row_id` plus the chosen metadata columns; the indexing worker chunks and embeds it
like any document. A sync:

1. reads the rows changed since the watermark, in (updated-at, id) order, when the
   source has an updated-at column, else every row, and queues those whose text or
   metadata changed (a content hash tells them apart; unchanged rows are skipped);
2. reads the source's ids (one query of the id column) and removes the documents of
   rows that are gone (their chunks and vectors go with them); with an updated-at
   column, only when some row changed or the source's count of rows with text is not
   the knowledge base's count of row documents, so an idle continuous sync costs two
   counts and one indexed query a second;
3. every `FULL_EVERY`th sync with an updated-at column also reads every row, which
   catches a change committed with an older updated-at than one already seen.

The updated-at column must grow with each change of a row (a trigger-free source
cannot say more). Sources are admin configuration: a PostgreSQL host is checked like a
provider's address (internal and metadata addresses refused, unless a platform
administrator allows them), and the connection goes to the address that was checked;
a SQLite file is opened read-only, only a platform administrator may name one, and
never a file under Shipyard's own data dir. Syncs are claimed with a lease, like
documents (`ingest`), so one replica runs each and another takes over one that
stopped; a heartbeat thread renews a running sync's lease every third of it, so a long
query of the source does not hand the sync to another replica halfway.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.errors import ShipyardError
from shipyard.identity.stored import still_valid
from shipyard.retrieval import kb
from shipyard.retrieval.kb import Parsed
from shipyard.retrieval.source import BATCH, Reader, SourceError, Spec, plain, row_key
from shipyard.retrieval.tables import ChunkRow, DocumentRow, KnowledgeBaseRow, SourceRow
from shipyard.store import new_id, utcnow

if TYPE_CHECKING:
    from shipyard.identity.actor import Actor
    from shipyard.platform import Platform

log = logging.getLogger("shipyard.retrieval")
PREFIX = "row-"
FULL_EVERY = 60


class Stopping(Exception):
    """The server is stopping: the sync hands its source back."""


@dataclass
class Outcome:
    seen: int = 0
    changed: int = 0
    deleted: int = 0
    watermark: str | None = None
    removed_chunks: list[int] = field(default_factory=list)


def spec_of(row: SourceRow, location: str) -> Spec:
    return Spec(
        kind=row.kind,
        location=location,
        allow_internal=row.allow_internal,
        table=row.table_name,
        id_column=row.id_column,
        text_column=row.text_column,
        updated_column=row.updated_column,
        metadata_columns=tuple(row.metadata_columns or ()),
    )


def doc_name(row_id: str) -> str:
    name = PREFIX + row_id
    if len(name) > 255 or "\x00" in name:
        return PREFIX + "sha256-" + hashlib.sha256(row_id.encode()).hexdigest()
    return name


def _parsed(spec: Spec, row: tuple[Any, ...]) -> Parsed | None:
    row_id, text = row_key(row[0]), row[1]
    if text is None:
        return None
    text = text if isinstance(text, str) else str(text)
    if not text.strip(" "):  # as the SQL side reads it: TRIM takes spaces only
        return None
    metadata: dict[str, Any] = {"row_id": row_id}
    for n, col in enumerate(spec.metadata_columns, 2):
        value = plain(row[n])
        if value is not None:
            metadata[col] = value
    data = text.encode()
    return Parsed(
        name=doc_name(row_id),
        format="txt",
        text=text,
        size=len(data),
        content_hash=hashlib.sha256(data).hexdigest(),
        metadata=metadata,
    )


# one sync ------------------------------------------------------------------------------


class Syncer:
    """Runs due syncs (one at a time here; replicas each run their own)."""

    def __init__(self, platform: Platform, *, enabled: bool, lease_s: float) -> None:
        self.platform = platform
        self.enabled = enabled
        self.lease = dt.timedelta(seconds=lease_s)
        self.worker = new_id("sy")
        self.wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._current: asyncio.Task[None] | None = None
        self._stopping = False
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._beat: _Heartbeat | None = None  # the running sync's (one at a time)

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        if self.enabled:
            self._loop = asyncio.create_task(self._running(), name="kb-sync")

    async def stop(self) -> None:
        """A running sync stops at its next batch and hands its source back."""
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
            self._loop = None
        if self._current is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._current), timeout=30)

    def poke(self) -> None:
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):
                self._event_loop.call_soon_threadsafe(self.wake.set)

    async def _running(self) -> None:
        while True:
            try:
                while True:
                    kb_id = await asyncio.to_thread(self._claim)
                    if kb_id is None:
                        break
                    self._current = asyncio.ensure_future(asyncio.to_thread(self.run, kb_id))
                    await asyncio.shield(self._current)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("claiming a sync failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)

    def _claim(self) -> str | None:
        now = utcnow()
        free = or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < now)
        with self.platform.db.transaction() as s:
            for kb_id in s.scalars(
                select(SourceRow.kb_id)
                .where(SourceRow.next_run_at <= now, free)
                .order_by(SourceRow.next_run_at)
                .limit(4)
            ).all():
                moved = s.execute(
                    update(SourceRow)
                    .where(SourceRow.kb_id == kb_id, SourceRow.next_run_at <= now, free)
                    .values(
                        worker=self.worker,
                        lease_until=now + self.lease,
                        status="syncing",
                        last_started_at=now,
                    )
                )
                if moved.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                    return str(kb_id)
        return None

    def run(self, kb_id: str) -> None:
        """One claimed sync, start to end; its outcome or error lands on its row. Its
        lease is renewed by a heartbeat while it runs, so a long query of the source (a
        count, the ids of a large table) does not let another replica take it over."""
        started = utcnow()
        self._beat = _Heartbeat(self, kb_id)
        try:
            with self._beat:
                outcome = self._sync(kb_id)
            self._check(stopping=False)  # done: a stop now keeps the outcome
        except Stopping:
            self._release(kb_id)
        except SourceError as exc:
            self._finish(kb_id, started, None, str(exc))
        except ShipyardError as exc:
            self._finish(kb_id, started, None, exc.detail)
        except Exception as exc:  # noqa: BLE001 - a bug fails this sync, not the worker
            log.exception("sync of %s failed", kb_id)
            self._finish(kb_id, started, None, f"internal error ({type(exc).__name__})")
        else:
            self._finish(kb_id, started, outcome, "")

    def _release(self, kb_id: str) -> None:
        """Hand a sync back when the server stops (any replica takes it up at once)."""
        with self.platform.db.transaction() as s:
            s.execute(
                update(SourceRow)
                .where(SourceRow.kb_id == kb_id, SourceRow.worker == self.worker)
                .values(worker="", lease_until=None, status="idle", next_run_at=utcnow())
            )

    def _finish(self, kb_id: str, started: dt.datetime, got: Outcome | None, error: str) -> None:
        with self.platform.db.transaction() as s:
            row = s.get(SourceRow, kb_id)
            if row is None or row.worker != self.worker:
                return
            now = utcnow()
            row.worker, row.lease_until, row.updated_at = "", None, now
            row.next_run_at = now + dt.timedelta(seconds=row.interval_seconds)
            row.syncs += 1
            if got is None:
                row.status, row.error = "failed", error[:2000]
                return
            row.status, row.error = "idle", ""
            row.last_success_at, row.last_success_started_at = now, started
            row.rows_seen, row.rows_changed, row.rows_deleted = got.seen, got.changed, got.deleted
            if got.watermark is not None:
                row.watermark = got.watermark

    def _sync(self, kb_id: str) -> Outcome:
        platform = self.platform
        with platform.db.transaction() as s:
            row = s.get(SourceRow, kb_id)
            base = s.get(KnowledgeBaseRow, kb_id)
            if row is None or base is None:
                raise SourceError("the knowledge base or its source was removed")
            actor = still_valid(s, row.actor, base.workspace_id, platform.grants)
            if isinstance(actor, str):
                raise SourceError(f"who configured the source can no longer: {actor}")
            spec = spec_of(row, platform.box.open(row.location_enc))
            full = not row.updated_column or row.syncs % FULL_EVERY == 0
            watermark = row.watermark
        out = Outcome(watermark=watermark)
        reader = Reader(spec)
        try:
            if full:
                live = reader.ids()
                out.seen = len(live)
                out.deleted = self._delete_gone(kb_id, live, out)
                for rows in reader.every():
                    out.changed += self._write(kb_id, spec, rows, actor)
                    self._check()
            read = 0
            if spec.updated_column:
                for rows in reader.changed(watermark):
                    read += len(rows)
                    # on a full pass too: a row changed after `every()` read past it is
                    # written now (an unchanged one is skipped by its content hash)
                    out.changed += self._write(kb_id, spec, rows, actor)
                    out.watermark = reader.mark_of(rows[-1])
                    self._check()
            if not full:
                # the ids are read only when rows may be gone: some changed (a delete and
                # an insert keep the count) or the count is not the documents'
                out.seen = reader.count()
                if read or out.seen != self._documents(kb_id):
                    live = reader.ids()
                    out.seen = len(live)
                    out.deleted = self._delete_gone(kb_id, live, out)
        finally:
            reader.close()
            retrieval = platform.services["retrieval"]
            # the documents deleted so far are gone whatever happened after: so are
            # their vectors (a failed sync left them taking search slots until restart)
            if out.removed_chunks:
                retrieval.index.remove(kb_id, out.removed_chunks)
            if out.changed:
                retrieval.queued()
        return out

    def _check(self, *, stopping: bool = True) -> None:
        """Between batches: stop when the server stops, give up a sync whose lease the
        heartbeat found held by another worker (it renews the lease; this reads nothing)."""
        if stopping and self._stopping:
            raise Stopping
        if self._beat is not None and self._beat.lost:
            raise SourceError("the sync was taken over (its lease passed) or removed")

    def extend(self, kb_id: str) -> bool:
        """The lease of the sync of `kb_id` moved on; False when this worker holds it
        no longer."""
        with self.platform.db.transaction() as s:
            moved = s.execute(
                update(SourceRow)
                .where(SourceRow.kb_id == kb_id, SourceRow.worker == self.worker)
                .values(lease_until=utcnow() + self.lease)
            )
            return bool(moved.rowcount)  # type: ignore[attr-defined]  # a CursorResult

    def _documents(self, kb_id: str) -> int:
        with self.platform.db.transaction() as s:
            return int(
                s.scalar(
                    select(func.count()).where(
                        DocumentRow.kb_id == kb_id, DocumentRow.name.startswith(PREFIX)
                    )
                )
                or 0
            )

    def _delete_gone(self, kb_id: str, live: set[str], out: Outcome) -> int:
        with self.platform.db.transaction() as s:
            names = {doc_name(i) for i in live}
            have = s.execute(
                select(DocumentRow.id, DocumentRow.name).where(
                    DocumentRow.kb_id == kb_id, DocumentRow.name.startswith(PREFIX)
                )
            ).all()
            gone = [d for d, name in have if name not in names]
            for start in range(0, len(gone), BATCH):
                part = gone[start : start + BATCH]
                out.removed_chunks += list(
                    s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(part)))
                )
                s.execute(delete(DocumentRow).where(DocumentRow.id.in_(part)))
            if gone:
                base = s.get(KnowledgeBaseRow, kb_id)
                if base is not None:
                    base.updated_at = utcnow()
            return len(gone)

    def _write(self, kb_id: str, spec: Spec, rows: list[tuple[Any, ...]], actor: Actor) -> int:
        """Queue the rows whose text or metadata changed; how many."""
        parsed = [p for p in (_parsed(spec, r) for r in rows) if p is not None]
        if not parsed:
            return 0
        with self.platform.db.transaction() as s:
            names = [p.name for p in parsed]
            have = {
                name: (digest, meta or {}, status)
                for name, digest, meta, status in s.execute(
                    select(
                        DocumentRow.name,
                        DocumentRow.content_hash,
                        DocumentRow.metadata_,
                        DocumentRow.status,
                    ).where(DocumentRow.kb_id == kb_id, DocumentRow.name.in_(names))
                ).all()
            }
            fresh = [
                p
                for p in parsed
                if p.name not in have
                or have[p.name][0] != p.content_hash
                or have[p.name][1] != p.metadata
                or have[p.name][2] in ("failed", "cancelled")
            ]
            if not fresh:
                return 0
            base = s.get(KnowledgeBaseRow, kb_id)
            if base is None:
                raise SourceError("the knowledge base was removed")
            return len(kb.add(s, base, fresh, actor).queued)


class _Heartbeat:
    """A thread that renews a running sync's lease every third of it, until the sync
    ends. `lost` says a renewal found the lease held by another worker (or the source
    removed): the sync's outcome is then not written."""

    def __init__(self, syncer: Syncer, kb_id: str) -> None:
        self.syncer, self.kb_id = syncer, kb_id
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="kb-sync-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        every = self.syncer.lease.total_seconds() / 3
        while not self._done.wait(every):
            try:
                if not self.syncer.extend(self.kb_id):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat retries
                log.warning("renewing the lease of the sync of %s failed", self.kb_id)


def pending(s: Session, kb_id: str) -> int:
    """Documents of the source's rows waiting to be indexed."""
    return int(
        s.scalar(
            select(func.count()).where(
                DocumentRow.kb_id == kb_id,
                DocumentRow.name.startswith(PREFIX),
                DocumentRow.status.in_(kb.ACTIVE),
            )
        )
        or 0
    )
