"""The local worker that executes evaluation runs.

A run is claimed with a lease (a compare-and-set on `eval_runs`): the worker renews it
as it goes, and a run whose lease expired (its worker was stopped or killed) is claimed
again by any worker, which resumes it: items that already have a result are skipped.
Items are worked in chunks: their targets are called concurrently (at most the run's
`concurrency` at once, through the gateway's typed in-process call, as the actor that
started the run), then every scorer scores the chunk as one batch, and the chunk's
results are written in one transaction with the run's progress. Cancelling a run is a
status change the worker reads between chunks (and, in this process, at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import or_, select, update

from shipyard.errors import RateLimited, ShipyardError
from shipyard.evaluation import datasets, runs
from shipyard.evaluation.files import prompt_messages
from shipyard.evaluation.tables import DatasetItemRow, DatasetRow, ResultRow, RunRow
from shipyard.gateway.core.call import ChatRequest
from shipyard.identity.actor import Actor
from shipyard.identity.stored import still_valid
from shipyard.plugins import Case, Score, ScoreContext
from shipyard.store import new_id, utcnow

if TYPE_CHECKING:
    from shipyard.platform import Platform

log = logging.getLogger("shipyard.evaluation")
RETRIES = 3  # a rate-limited item is retried this often (after Retry-After) before it fails


class Stopped(Exception):
    """The run was cancelled, or its lease passed to another worker."""


@dataclass
class Progress:
    done: int = 0
    total: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


class Runner:
    def __init__(self, platform: Platform, *, slots: int, lease_s: float, chunk: int) -> None:
        self.platform = platform
        self.worker = new_id("wk")
        self.slots = slots
        self.lease = timedelta(seconds=lease_s)
        self.chunk = chunk
        self.active: dict[str, asyncio.Task[None]] = {}
        self.progress: dict[str, Progress] = {}
        self.wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._loop = asyncio.create_task(self._claiming(), name="eval-runner")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self.active.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:  # one by one: a task of a loop already closed is left, not raised
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.active:  # let any worker resume them at once
            ids = list(self.active)
            await asyncio.to_thread(self._release, ids)
        self.active.clear()

    def _release(self, ids: list[str]) -> None:
        with self.platform.db.transaction() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id.in_(ids), RunRow.worker == self.worker)
                .values(lease_until=None, worker="")
            )

    def _finished(self, task: asyncio.Task[None]) -> None:
        for run_id, t in list(self.active.items()):
            if t is task:
                del self.active[run_id]

    def poke(self) -> None:
        """Claim now rather than at the next poll (thread-safe)."""
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it stopped
                self._event_loop.call_soon_threadsafe(self.wake.set)

    def cancel(self, run_id: str) -> None:
        """Stop the run's task in this process now (thread-safe)."""
        if self._event_loop is None:
            return
        task = self.active.get(run_id)
        if task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: it stopped
                self._event_loop.call_soon_threadsafe(task.cancel)

    # Claiming -----------------------------------------------------------------------------

    async def _claiming(self) -> None:
        while True:
            try:
                free = self.slots - len(self.active)
                if free > 0:
                    for run_id in await asyncio.to_thread(self._claim, free):
                        task = asyncio.create_task(self._run(run_id), name=f"eval-{run_id}")
                        self.active[run_id] = task
                        task.add_done_callback(self._finished)
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("claiming evaluation runs failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    def _claim(self, free: int) -> list[str]:
        now = utcnow()
        claimed = []
        with self.platform.db.transaction() as s:
            candidates = s.scalars(
                select(RunRow.id)
                .where(
                    RunRow.status.in_(runs.ACTIVE),
                    or_(RunRow.lease_until.is_(None), RunRow.lease_until < now),
                )
                .order_by(RunRow.created_at)
                .limit(free)
            ).all()
            for run_id in candidates:
                moved = s.execute(
                    update(RunRow)
                    .where(
                        RunRow.id == run_id,
                        RunRow.status.in_(runs.ACTIVE),
                        or_(RunRow.lease_until.is_(None), RunRow.lease_until < now),
                    )
                    .values(status="running", worker=self.worker, lease_until=now + self.lease)
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
                    claimed.append(run_id)
        return claimed

    # One run ------------------------------------------------------------------------------

    async def _run(self, run_id: str) -> None:
        try:
            await self._execute(run_id)
        except (Stopped, asyncio.CancelledError):
            return
        except Exception as exc:  # noqa: BLE001 - a run fails, the worker goes on
            log.exception("evaluation run %s failed", run_id)
            await asyncio.to_thread(self._fail, run_id, f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            self.progress.pop(run_id, None)

    def _fail(self, run_id: str, error: str) -> None:
        with self.platform.db.transaction() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.worker == self.worker)
                .values(status="failed", error=error, finished_at=utcnow(), lease_until=None)
            )

    def _load(
        self, run_id: str
    ) -> tuple[RunRow, list[DatasetItemRow], dict[str, ResultRow], Actor | str]:
        with self.platform.db.transaction() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise Stopped
            ds = s.get(DatasetRow, run.dataset_id)
            if ds is None:
                raise Stopped
            if run.started_at is None:
                run.started_at = utcnow()
            items = datasets.items(s, ds, run.dataset_version)
            have = {
                r.item_key: r
                for r in s.scalars(select(ResultRow).where(ResultRow.run_id == run_id))
            }
            actor = still_valid(
                s, run.target.get("actor") or {}, run.workspace_id, self.platform.grants
            )
            s.expunge_all()
            return run, items, have, actor

    async def _execute(self, run_id: str) -> None:
        run, items, have, actor = await asyncio.to_thread(self._load, run_id)
        if isinstance(actor, str):
            await asyncio.to_thread(self._fail, run_id, actor)
            return
        finished = {k for k, r in have.items() if r.scored}
        progress = self.progress[run_id] = Progress(done=len(finished), total=len(items))
        progress.errors = sum(1 for r in have.values() if r.error)
        scorers = runs.loaded(self.platform.plugins, run.scorers)
        gate = asyncio.Semaphore(run.concurrency)
        pending = [i for i in items if i.key not in finished]
        renewing = asyncio.create_task(self._renewing(run_id))
        try:
            size = max(self.chunk, run.concurrency * 2)
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                tasks = [
                    asyncio.create_task(self._generated(run, item, actor, gate, have.get(item.key)))
                    for item in chunk
                ]
                try:
                    generated = await asyncio.gather(*tasks)
                except BaseException:  # cancelled or stopped: no sibling calls on
                    for task in tasks:
                        task.cancel()
                    raise
                rows = await self._score(run, chunk, generated, scorers, actor)
                await asyncio.to_thread(self._write, run_id, rows)
                progress.done += len(rows)
                progress.errors += sum(1 for r in rows if r.error)
        finally:
            renewing.cancel()
        await asyncio.to_thread(self._complete, run_id)

    async def _renewing(self, run_id: str) -> None:
        """Keep the lease while the run works (a slow chunk must not look abandoned)."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await asyncio.to_thread(self._renew, run_id)

    def _renew(self, run_id: str) -> None:
        with self.platform.db.transaction() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.worker == self.worker)
                .values(lease_until=utcnow() + self.lease)
            )

    async def _generated(
        self,
        run: RunRow,
        item: DatasetItemRow,
        actor: Actor,
        gate: asyncio.Semaphore,
        have: ResultRow | None,
    ) -> ResultRow:
        """The item's output: the one stored before a restart, else a new one, stored
        at once."""
        if have is not None:
            return have
        row = await self._generate(run, item, actor, gate)
        row.scored = bool(row.error)  # a failed item has nothing to score
        await asyncio.to_thread(self._save, run.id, [row])
        return row

    def _save(self, run_id: str, rows: list[ResultRow]) -> None:
        with self.platform.db.transaction() as s:
            run = s.get(RunRow, run_id)
            if run is None or run.status != "running" or run.worker != self.worker:
                raise Stopped  # cancelled, or resumed elsewhere: these results are dropped
            for row in rows:
                s.merge(row)
            s.flush()
            run.done, run.errors = runs.counts(s, run_id)

    async def _generate(
        self, run: RunRow, item: DatasetItemRow, actor: Actor, gate: asyncio.Semaphore
    ) -> ResultRow:
        row = ResultRow(run_id=run.id, item_key=item.key, position=item.position, scores={})
        gateway = self.platform.services["gateway"]
        async with gate:
            for attempt in range(RETRIES + 1):
                try:
                    if run.target["kind"] == "pipeline":
                        return await self._invoke(run, item, actor, row)
                    request = await asyncio.to_thread(self._request, run, item, actor)
                    result = await gateway.chat(request, actor=actor)
                except RateLimited as exc:
                    if attempt < RETRIES:
                        await asyncio.sleep(min(30.0, exc.retry_after or 1.0))
                        continue
                    row.error = f"{exc.status} {exc.detail}"[:2000]
                    return row
                except ShipyardError as exc:
                    row.error = f"{exc.status} {exc.detail}"[:2000]
                    return row
                break
        row.output = result.content
        row.latency_ms = result.latency_ms
        usage = result.usage
        row.input_tokens = int(usage.get("prompt_tokens") or 0)
        row.output_tokens = int(usage.get("completion_tokens") or 0)
        row.cost_usd = float(result.cost_usd or 0.0)
        row.trace_id = result.trace_id
        return row

    async def _invoke(
        self, run: RunRow, item: DatasetItemRow, actor: Actor, row: ResultRow
    ) -> ResultRow:
        """A pipeline target: invoked with the item's inputs as its inputs."""
        done = await self.platform.services["pipelines"].invoke(
            actor, run.target["ref"], dict(item.inputs or {})
        )
        output = done.output
        row.output = output if isinstance(output, str) else orjson.dumps(output).decode()
        row.latency_ms = done.ms
        row.input_tokens = done.usage["prompt_tokens"]
        row.output_tokens = done.usage["completion_tokens"]
        row.cost_usd = done.cost_usd
        row.trace_id = done.trace_id
        return row

    def _retrieved(self, workspace_id: str, trace_ids: list[str]) -> dict[str, list[str]]:
        """trace id -> the ids its retrieval spans retrieved, in span then rank order."""
        tracing = self.platform.services.get("tracing")
        if tracing is None or tracing.store is None or not trace_ids:
            return {}
        tracing.flush()  # the spans were acknowledged; wait until they are stored
        out: dict[str, list[str]] = {}
        for trace_id in trace_ids:
            page = tracing.store.trace_spans(workspace_id, trace_id, limit=1000)
            ids: list[str] = []
            for span in page.items:
                attrs = span.attributes or {}
                i = 0
                while f"retrieval.documents.{i}.document.id" in attrs:
                    ids.append(str(attrs[f"retrieval.documents.{i}.document.id"]))
                    i += 1
            out[trace_id] = ids
        return out

    def _request(self, run: RunRow, item: DatasetItemRow, actor: Actor) -> ChatRequest:
        target, params = run.target, dict(run.params)
        if target["kind"] in {"route", "model"}:
            return ChatRequest(target["ref"], prompt_messages(item.inputs), params)
        body: dict[str, Any] = {**params, "prompt": target["ref"], "variables": item.inputs}
        if target.get("model"):
            body["model"] = target["model"]
        gateway = self.platform.services["gateway"]
        expanded, label = gateway.expand_prompt(actor.workspace_id, body)
        model, messages = expanded.pop("model"), expanded.pop("messages")
        expanded.pop("variables", None)
        return ChatRequest(model, messages, expanded, prompt=label)

    async def _score(
        self,
        run: RunRow,
        items: Sequence[DatasetItemRow],
        rows: list[ResultRow],
        scorers: Sequence[tuple[str, Any, dict[str, Any]]],
        actor: Actor,
    ) -> list[ResultRow]:
        ok = [(item, row) for item, row in zip(items, rows, strict=True) if not row.error]
        ok = [(item, row) for item, row in ok if not row.scored]
        retrieved: dict[str, list[str]] = {}
        if run.target["kind"] == "pipeline":
            traces = [row.trace_id for _, row in ok if row.trace_id]
            retrieved = await asyncio.to_thread(self._retrieved, run.workspace_id, traces)
        cases = [
            Case(
                inputs=item.inputs,
                expected=item.expected,
                output=row.output,
                metadata=item.metadata_ or {},
                latency_ms=row.latency_ms,
                cost_usd=row.cost_usd,
                retrieved=retrieved.get(row.trace_id),
            )
            for item, row in ok
        ]
        verdicts = await score_all(self.platform, scorers, cases, actor, where=f"run {run.id}")
        for (_, row), scores in zip(ok, verdicts, strict=True):
            row.scores = {
                **row.scores,
                **{label: {"value": v.value, "reason": v.reason} for label, v in scores.items()},
            }
        return rows

    def _write(self, run_id: str, rows: list[ResultRow]) -> None:
        for row in rows:
            row.scored = True
        self._save(run_id, rows)

    def _complete(self, run_id: str) -> None:
        with self.platform.db.transaction() as s:
            run = s.get(RunRow, run_id)
            if run is None or run.status != "running" or run.worker != self.worker:
                return
            rows = runs.results(s, run)
            run.aggregates = runs.aggregates(run, rows)
            run.done, run.errors = runs.counts(s, run_id)
            run.status, run.finished_at, run.lease_until = "completed", utcnow(), None


async def score_all(
    platform: Platform,
    scorers: Sequence[tuple[str, Any, dict[str, Any]]],
    cases: Sequence[Case],
    actor: Actor,
    *,
    where: str,
) -> list[dict[str, Score]]:
    """Every scorer over the cases as one batch each (their gateway calls as `actor`);
    per case, label -> Score. A scorer that raises fails its own scores, nothing else."""
    if not cases:
        return []
    gateway = platform.services["gateway"]

    async def embed(texts: list[str], route: str) -> list[list[float]]:
        result = await gateway.embed(texts, model=route, actor=actor)
        vectors: list[list[float]] = result.vectors
        return vectors

    async def chat(request: Any) -> Any:
        return await gateway.chat(request, actor=actor)

    out: list[dict[str, Score]] = [{} for _ in cases]
    for label, scorer, config in scorers:
        ctx = ScoreContext(config=config, embed=embed, chat=chat)
        try:
            scores: list[Score] = await scorer.score(cases, ctx)
            if len(scores) != len(cases):
                raise ValueError(f"{len(scores)} scores for {len(cases)} cases")
        except Exception as exc:  # noqa: BLE001 - a scorer's bug fails its scores, not the run
            log.warning("scorer %s failed on %s: %s", label, where, exc)
            scores = [Score(None, f"the scorer failed: {type(exc).__name__}")] * len(cases)
        for verdicts, score in zip(out, scores, strict=True):
            verdicts[label] = finite(score)
    return out


def finite(score: Any) -> Score:
    """A plugin's verdict as one the store and the API can hold: a finite float or None
    (NaN, infinities and non-numbers become None, with the reason saying so)."""
    value = getattr(score, "value", None)
    reason = str(getattr(score, "reason", "") or "")[:1000]
    if value is None:
        return Score(None, reason)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return Score(None, f"the scorer returned a non-number ({type(value).__name__})")
    if not math.isfinite(number):
        return Score(None, f"the scorer returned {number}")
    return Score(number, reason)
