"""Evaluation runs under /api/evals: start one (queued for the local worker), follow
its progress, read its per-item results (failures first when asked), cancel it, and
compare runs side by side. Thin routes over `shipyard.evaluation.runs`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field
from sqlalchemy import select

from shipyard.errors import Conflict, InvalidInput, PermissionDenied
from shipyard.evaluation import datasets, runs
from shipyard.evaluation.schemas import ResultPage, ResultPublic, RunIn
from shipyard.evaluation.schemas import RunPublic as RunPublic  # re-exported for the pages
from shipyard.evaluation.tables import DatasetItemRow, DatasetRow, ResultRow, RunRow
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.registry import catalog
from shipyard.registry.api import change
from shipyard.registry.catalog import CatalogEntryPublic
from shipyard.store import utcnow

router = APIRouter(prefix="/api/evals", tags=["evaluation"])


def public(row: RunRow, dataset: str, live: Any = None) -> RunPublic:
    target = {k: v for k, v in row.target.items() if k != "actor"}
    done, errors = row.done, row.errors
    if live is not None and row.status == "running":
        done, errors = max(done, live.done), max(errors, live.errors)
    return RunPublic(
        id=row.id,
        name=row.name,
        target=target,
        subject=row.subject or None,
        dataset=dataset,
        dataset_version=row.dataset_version,
        scorers=row.scorers,
        params=row.params,
        concurrency=row.concurrency,
        status=row.status,
        total=row.total,
        done=done,
        errors=errors,
        aggregates=row.aggregates or {},
        error=row.error,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _service(ctx: Ctx) -> Any:
    return ctx.platform.services.get("evaluation")


def _public(ctx: Ctx, s: Any, row: RunRow) -> RunPublic:
    ds = s.get(DatasetRow, row.dataset_id)
    service = _service(ctx)
    live = service.progress(row.id) if service is not None else None
    return public(row, ds.name if ds else "", live)


@router.post("/runs", status_code=201, name="evals.runs.create")
def create_run(body: RunIn, ctx: Ctx = Authorized("evals:run")) -> RunPublic:
    """Queued for the local worker; the target is called as you (your limits and
    budgets apply), and you need `gateway:call` for it."""
    if not ctx.actor.can("gateway:call"):
        raise InvalidInput("the run calls the gateway as you: your role cannot", param="target")
    gateway = ctx.platform.services["gateway"]
    with ctx.tx() as tx:
        row = runs.create(
            tx.session, plugins=ctx.platform.plugins, gateway=gateway, actor=ctx.actor, body=body
        )
        tx.target = f"eval_run:{row.id}"
        tx.detail = f"{row.target_label} on {body.dataset}@{row.dataset_version}"
        out = _public(ctx, tx.session, row)
    service = _service(ctx)
    if service is not None:
        service.queued()
    return out


@router.get("/runs", name="evals.runs.list")
def list_runs(
    ctx: Ctx = Authorized("evals:read"),
    dataset: Annotated[str | None, Query(max_length=128)] = None,
    subject: Annotated[str | None, Query(max_length=240, description="model:name@3")] = None,
    status: Literal["queued", "running", "completed", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RunPublic]:
    """Newest first."""
    with ctx.tx() as tx:
        q = select(RunRow).where(RunRow.workspace_id == ctx.workspace_id)
        if dataset is not None:
            q = q.where(RunRow.dataset_id == datasets.get(tx.session, ctx.workspace_id, dataset).id)
        if status is not None:
            q = q.where(RunRow.status == status)
        if subject is not None:
            q = q.where(RunRow.subject == subject)
        rows = tx.session.scalars(q.order_by(RunRow.created_at.desc()).limit(limit)).all()
        return [_public(ctx, tx.session, r) for r in rows]


@router.get("/runs/{run_id}", name="evals.runs.get")
def get_run(run_id: str, ctx: Ctx = Authorized("evals:read")) -> RunPublic:
    with ctx.tx() as tx:
        return _public(ctx, tx.session, runs.get(tx.session, ctx.workspace_id, run_id))


@router.post("/runs/{run_id}/cancel", name="evals.runs.cancel")
def cancel_run(run_id: str, ctx: Ctx = Authorized("evals:run")) -> RunPublic:
    """Stops a queued or running run; what it finished stays readable."""
    with ctx.tx(target=f"eval_run:{run_id[:32]}") as tx:
        row = runs.get(tx.session, ctx.workspace_id, run_id)
        if row.status not in runs.ACTIVE:
            raise Conflict(f"the run is {row.status}: only a queued or running run stops")
        row.status, row.lease_until = "cancelled", None
        row.done, row.errors = runs.counts(tx.session, row.id)
        row.finished_at = utcnow()
        out = _public(ctx, tx.session, row)
    service = _service(ctx)
    if service is not None:
        service.cancelled(out.id)
    return out


@router.delete("/runs/{run_id}", status_code=204, name="evals.runs.delete")
def delete_run(run_id: str, ctx: Ctx = Authorized("evals:run")) -> Response:
    with ctx.tx(target=f"eval_run:{run_id[:32]}") as tx:
        row = runs.get(tx.session, ctx.workspace_id, run_id)
        if row.status in runs.ACTIVE:
            raise Conflict("the run is still active: cancel it first")
        tx.session.delete(row)
    return Response(status_code=204)


@router.get("/runs/{run_id}/results", name="evals.runs.results")
def run_results(
    run_id: str,
    ctx: Ctx = Authorized("evals:read"),
    failed: Annotated[
        bool, Query(description="only items that errored or scored below `below`")
    ] = False,
    scorer: Annotated[str | None, Query(max_length=64)] = None,
    below: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    cursor: Annotated[str | None, Query(max_length=12)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ResultPage:
    """In dataset order. `failed=true&scorer=exact_match&below=1` browses failures."""
    if below is not None and scorer is None:
        raise InvalidInput("below: give the scorer it applies to", param="scorer")
    after = -1
    if cursor:
        if not cursor.isdigit():
            raise InvalidInput("cursor: not a cursor this API returned", param="cursor")
        after = int(cursor)
    with ctx.tx() as tx:
        run = runs.get(tx.session, ctx.workspace_id, run_id)
        if scorer is not None and scorer not in {s["label"] for s in run.scorers}:
            raise InvalidInput(f"scorer: the run has no scorer {scorer!r}", param="scorer")
        q = (
            select(ResultRow)
            .where(ResultRow.run_id == run.id, ResultRow.position > after)
            .order_by(ResultRow.position)
        )
        picked: list[ResultRow] = []
        for row in tx.session.scalars(q):
            if failed and not _failed(row, scorer, below):
                continue
            picked.append(row)
            if len(picked) > limit:
                break
        more = len(picked) > limit
        picked = picked[:limit]
        keys = [r.item_key for r in picked]
        items = {
            i.key: i
            for i in tx.session.scalars(
                select(DatasetItemRow).where(
                    DatasetItemRow.dataset_id == run.dataset_id,
                    DatasetItemRow.key.in_(keys),
                    DatasetItemRow.from_version <= run.dataset_version,
                )
            )
            if i.to_version is None or i.to_version > run.dataset_version
        }
        out = []
        for r in picked:
            item = items.get(r.item_key)
            out.append(
                ResultPublic(
                    id=r.item_key,
                    position=r.position,
                    inputs=item.inputs if item else {},
                    expected=item.expected if item else None,
                    output=r.output,
                    error=r.error,
                    latency_ms=r.latency_ms,
                    input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens,
                    cost_usd=r.cost_usd,
                    scores=r.scores,
                    trace_id=r.trace_id or None,
                )
            )
        return ResultPage(items=out, next_cursor=str(picked[-1].position) if more else None)


def _failed(row: ResultRow, scorer: str | None, below: float | None) -> bool:
    if row.error:
        return True
    labels = [scorer] if scorer else list(row.scores)
    for label in labels:
        value = (row.scores.get(label) or {}).get("value")
        if value is None:
            return True
        if below is not None and value < below:
            return True
        if below is None and value <= 0:
            return True
    return False


@router.get("/compare", name="evals.compare")
def compare(
    runs_: Annotated[list[str], Query(alias="runs", min_length=2, max_length=8)],
    ctx: Ctx = Authorized("evals:read"),
) -> dict[str, Any]:
    """Runs side by side on the items they share, each against the first: aggregates,
    paired differences with significance (bootstrap, sign test), wins, losses, ties,
    and every item's outputs and scores."""
    if len(set(runs_)) != len(runs_):
        raise InvalidInput("runs: a run is named twice", param="runs")
    with ctx.tx() as tx:
        rows = [runs.get(tx.session, ctx.workspace_id, r) for r in runs_]
        if len({r.dataset_id for r in rows}) != 1:
            raise InvalidInput("runs: compare runs on the same dataset", param="runs")
        results = [runs.results(tx.session, r) for r in rows]
        out = runs.compare(rows, results)
        out["runs"] = [_public(ctx, tx.session, r).model_dump(mode="json") for r in rows]
        return out


class BenchmarkFromRun(Strict):
    """Fill a catalog entry's benchmark from this run: `accuracy[<dataset>@<version>]`
    is the scorer's mean, `latency_ms` the run's p50."""

    catalog: str = Field(min_length=1, max_length=128, description="the catalog entry")
    scorer: str = Field(min_length=1, max_length=64)
    latency: bool = True


@router.post("/runs/{run_id}/benchmark", name="evals.runs.benchmark")
async def benchmark_from_run(
    run_id: str, body: BenchmarkFromRun, ctx: Ctx = Authorized("evals:read")
) -> CatalogEntryPublic:
    """Writing the catalog needs `registry:write` as well."""
    if not ctx.actor.can("registry:write"):
        raise PermissionDenied("filling a catalog entry needs registry:write")

    def work() -> CatalogEntryPublic:
        with ctx.tx(target=f"catalog:{body.catalog}") as tx:
            run = runs.get(tx.session, ctx.workspace_id, run_id)
            if run.status != "completed":
                raise Conflict(f"the run is {run.status}: only a completed run fills a benchmark")
            summary = (run.aggregates.get("scores") or {}).get(body.scorer)
            if summary is None or summary.get("mean") is None:
                raise InvalidInput(
                    f"scorer: the run has no scores for {body.scorer!r}", param="scorer"
                )
            ds = tx.session.get(DatasetRow, run.dataset_id)
            p50 = (run.aggregates.get("latency_ms") or {}).get("p50") if body.latency else None
            tx.detail = f"from run {run.id}"
            return catalog.set_benchmark(
                tx.session,
                workspace_id=ctx.workspace_id,
                name=body.catalog,
                dataset=f"{ds.name if ds else run.dataset_id}@{run.dataset_version}",
                score=float(summary["mean"]),
                latency_ms=None if p50 is None else float(p50),
            )

    return await change(ctx, work)
