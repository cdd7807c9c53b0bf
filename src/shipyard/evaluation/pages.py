"""Web UI pages of evaluation: datasets (versions, items a page at a time, CSV/JSONL
upload, export links), evaluation runs (live progress, aggregates, per-item results and
failures, cancel), a form to start a run, and the comparison of two or more runs (the
aggregates side by side, paired differences with significance, bar charts of each
scorer's mean with its interval, and the per-item diff).

The pages call the API's own route functions and service functions (the same checks,
the same audit entries); a refusal is a message on the page, audited as a failed
attempt. Item inputs, outputs and names are user input: the templates escape them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.responses import Response

from shipyard.errors import InvalidInput, PayloadTooLarge, ShipyardError
from shipyard.evaluation import datasets, files, runs
from shipyard.evaluation.api import datasets as datasets_api
from shipyard.evaluation.api import runs as runs_api
from shipyard.evaluation.compare_chart import bar_charts, verdicts
from shipyard.evaluation.schemas import RunIn, RunPublic, VersionPublic
from shipyard.evaluation.scorers import load_scorer
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import invalid
from shipyard.plugins import SCORERS
from shipyard.ui.router import _audit_ui_failure, render, templates

router = APIRouter(include_in_schema=False)
T = TypeVar("T")
ITEMS_PAGE = 50
RESULTS_PAGE = 50
KINDS = ("route", "model", "prompt", "release", "pipeline")
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def show(value: Any) -> str:
    """A value as text for a cell: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def num(value: Any, spec: str = ".3f") -> str:
    """A number for a cell; "–" for none (or a key a partial aggregate lacks)."""
    return format(value, spec) if isinstance(value, int | float) else "–"


def _attempt(ctx: Ctx, work: Callable[[], T]) -> tuple[T | None, str | None]:
    """Run a page's change (blocking); on a refusal, the message to show (audited)."""
    try:
        return work(), None
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        return None, exc.detail


async def _page(ctx: Ctx, name: str, page: str, status: int = 200, **values: Any) -> Response:
    return await run_in_threadpool(render, ctx, name, page, status, show=show, num=num, **values)


# Datasets ------------------------------------------------------------------------------


def _datasets_page(ctx: Ctx, error: str | None = None, form: dict[str, str] | None = None) -> Any:
    return {"datasets": datasets_api.list_datasets(ctx), "error": error, "form": form or {}}


@router.get("/datasets", name="ui.datasets")
async def datasets_page(ctx: Ctx = Authorized("datasets:read")) -> Response:
    values = await run_in_threadpool(_datasets_page, ctx)
    return await _page(ctx, "eval_datasets.html", "eval_datasets", **values)


def _dataset(
    ctx: Ctx,
    name: str,
    version: int | None = None,
    cursor: str | None = None,
    **values: Any,
) -> dict[str, Any]:
    ds = datasets_api.get_dataset(name, ctx)
    versions = datasets_api.list_versions(name, ctx)
    page = None
    if ds.latest:
        page = datasets_api.list_items(
            name, ctx, version=version, cursor=cursor or None, limit=ITEMS_PAGE
        )
    more = None
    if page is not None and page.next_cursor is not None:
        query = urlencode({"version": page.version, "cursor": page.next_cursor})
        more = f"/datasets/{quote(name, safe='')}?{query}"
    return {
        "ds": ds,
        "versions": versions,
        "items_page": page,
        "more": more,
        "exports": files.EXPORTS,
        **values,
    }


@router.get("/datasets/{name}", name="ui.dataset")
async def dataset_page(
    name: str,
    ctx: Ctx = Authorized("datasets:read"),
    version: int | None = Query(None, ge=1, le=10**9),
    cursor: str = Query("", max_length=16),
) -> Response:
    values = await run_in_threadpool(lambda: _dataset(ctx, name, version, cursor))
    return await _page(ctx, "eval_dataset.html", "eval_datasets", **values)


def upload_format(chosen: str, filename: str) -> str:
    """The upload's format: the one chosen, else the file name's suffix."""
    if chosen:
        if chosen not in files.FORMATS:
            raise InvalidInput(f"format: one of {', '.join(files.FORMATS)}", param="format")
        return chosen
    suffix = filename[filename.rfind(".") :].lower() if "." in filename else ""
    if suffix not in SUFFIXES:
        raise InvalidInput("format: pick CSV or JSONL (the file name does not say)", param="format")
    return SUFFIXES[suffix]


@router.post("/datasets/upload", name="ui.dataset_upload")
async def upload(
    file: UploadFile = File(),
    name: str = Form(max_length=128),
    format: str = Form("", max_length=8),
    message: str = Form("", max_length=2000),
    create: str = Form("", max_length=4),
    ctx: Ctx = Authorized("datasets:write"),
) -> Response:
    """A CSV or JSONL file as one new version through the upload route's own parsing
    and writing (`create`: the list page's form, which makes the dataset); a bad file
    is refused whole, its bad line named on the page."""
    name = name.strip()
    limit = ctx.platform.settings.dataset_upload_max_bytes
    data = await file.read(limit + 1)

    def work() -> VersionPublic:
        if not re.match(datasets.NAME, name):
            raise InvalidInput(
                "name: letters, digits, '.', '_' or '-' (at most 128), first a letter or digit",
                param="name",
            )
        if len(data) > limit:
            raise PayloadTooLarge(f"the file exceeds {limit} bytes")
        fmt = upload_format(format, file.filename or "")
        items = files.parse(data, fmt)
        return datasets_api.store_upload(
            ctx, name, items, fmt=fmt, message=message.strip(), create=bool(create)
        )

    v, error = await run_in_threadpool(_attempt, ctx, work)
    if v is None:
        if create:
            form = {"name": name, "message": message}
            values = await run_in_threadpool(_datasets_page, ctx, error, form)
            return await _page(ctx, "eval_datasets.html", "eval_datasets", **values)
        values = await run_in_threadpool(lambda: _dataset(ctx, name, error=error))
        return await _page(ctx, "eval_dataset.html", "eval_datasets", **values)
    said = f"Version {v.version}: +{v.added} items ({v.item_count} in all)."
    values = await run_in_threadpool(lambda: _dataset(ctx, name, message=said))
    response = await _page(ctx, "eval_dataset.html", "eval_datasets", **values)
    response.headers["HX-Push-Url"] = f"/datasets/{quote(name, safe='')}"
    return response


# Runs ----------------------------------------------------------------------------------


def main_score(run: RunPublic) -> tuple[str, float | None]:
    """The run's first scorer and its mean."""
    if not run.scorers:
        return "", None
    label = run.scorers[0]["label"]
    return label, ((run.aggregates.get("scores") or {}).get(label) or {}).get("mean")


@router.get("/evals", name="ui.eval_runs")
async def runs_page(
    ctx: Ctx = Authorized("evals:read"), dataset: str = Query("", max_length=128)
) -> Response:
    listed = await run_in_threadpool(
        lambda: runs_api.list_runs(ctx, dataset=dataset or None, status=None, limit=200)
    )
    return await _page(
        ctx, "eval_runs.html", "eval_runs", runs=listed, main_score=main_score, dataset=dataset
    )


def _form_values(ctx: Ctx) -> dict[str, Any]:
    snap = ctx.platform.gateway.snapshot
    routes = [r.name for r in snap.visible_routes(ctx.workspace_id) if r.kind == "chat"]
    prompts = sorted(ref for ws, ref in snap.prompts if ws == ctx.workspace_id)
    return {
        "datasets": datasets_api.list_datasets(ctx),
        "scorers": sorted(ctx.platform.plugins.names(SCORERS)),
        "routes": routes,
        "prompts": prompts,
        "kinds": KINDS,
    }


def _config(name: str, raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"config of {name}: not JSON ({exc})", param=f"config.{name}") from None
    if not isinstance(config, dict):
        raise InvalidInput(f"config of {name}: a JSON object", param=f"config.{name}")
    return config


def run_body(form: Mapping[str, str], scorers: list[str]) -> RunIn:
    """The API's input model from the form (every field text; empty: not given)."""
    if not scorers:
        raise InvalidInput("scorers: pick at least one scorer", param="scorers")
    target: dict[str, Any] = {"kind": form.get("kind", ""), "ref": form.get("ref", "").strip()}
    if form.get("model", "").strip():
        target["model"] = form["model"].strip()
    values: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "target": target,
        "dataset": form.get("dataset", ""),
        "scorers": [
            {"name": n, "config": _config(n, form.get(f"config.{n}", ""))} for n in scorers
        ],
    }
    for field in ("dataset_version", "concurrency"):
        raw = form.get(field, "").strip()
        if raw:
            if not raw.isdigit() or len(raw) > 9:
                raise InvalidInput(f"{field}: a whole number", param=field)
            values[field] = int(raw)
    try:
        return RunIn.model_validate(values)
    except ValidationError as exc:
        raise invalid(exc) from None


@router.get("/evals/new", name="ui.eval_new")
async def new_run_page(
    ctx: Ctx = Authorized("evals:run"), dataset: str = Query("", max_length=128)
) -> Response:
    values = await run_in_threadpool(_form_values, ctx)
    form = {"dataset": dataset, "kind": "route", "concurrency": "2"}
    return await _page(
        ctx, "eval_new.html", "eval_runs", form=form, picked=[], error=None, **values
    )


@router.post("/evals/new", name="ui.eval_create")
async def create_run(request: Request, ctx: Ctx = Authorized("evals:run")) -> Response:
    """Through the API's `create_run` (the same checks: dataset version, scorers and
    their configuration, the target, `gateway:call`); then to the run's page."""
    raw = await request.form(max_fields=200)
    form = {k: v for k, v in raw.items() if isinstance(v, str) and k != "scorer"}
    picked = [v for v in raw.getlist("scorer") if isinstance(v, str)][:20]

    def work() -> RunPublic:
        return runs_api.create_run(run_body(form, picked), ctx)

    run, error = await run_in_threadpool(_attempt, ctx, work)
    if run is not None:
        return Response(status_code=204, headers={"HX-Redirect": f"/evals/{run.id}"})
    values = await run_in_threadpool(_form_values, ctx)
    return await _page(
        ctx, "eval_new.html", "eval_runs", form=form, picked=picked, error=error, **values
    )


def _filters(failed: str, scorer: str, below: str) -> dict[str, Any]:
    value = None
    if below.strip():
        try:
            value = float(below)
        except ValueError:
            raise InvalidInput("below: a number", param="below") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput("below: a number", param="below")
    return {"failed": failed == "true", "scorer": scorer or None, "below": value}


def _run(
    ctx: Ctx,
    run_id: str,
    f: dict[str, str],
    error: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    run = runs_api.get_run(run_id, ctx)
    results, more = None, None
    try:
        page = runs_api.run_results(
            run.id,
            ctx,
            cursor=f.get("cursor") or None,
            limit=RESULTS_PAGE,
            **_filters(f.get("failed", ""), f.get("scorer", ""), f.get("below", "")),
        )
        results = page.items
        if page.next_cursor is not None:
            kept = {k: v for k, v in f.items() if v and k != "cursor"}
            more = f"/evals/{run.id}?{urlencode({**kept, 'cursor': page.next_cursor})}"
    except ShipyardError as exc:
        error = error or exc.detail
    return {
        "run": run,
        "results": results,
        "more": more,
        "f": f,
        "error": error,
        "message": message,
        "active": run.status in runs.ACTIVE,
        "labels": [s["label"] for s in run.scorers],
    }


@router.get("/evals/compare", name="ui.eval_compare")
async def compare_page(
    ctx: Ctx = Authorized("evals:read"),
    picked: list[str] = Query([], alias="runs", max_length=8),
    scorer: str = Query("", max_length=64),
) -> Response:
    def load() -> dict[str, Any]:
        if len(picked) < 2:
            raise InvalidInput("runs: pick two or more runs to compare", param="runs")
        out = runs_api.compare([r[:32] for r in picked], ctx)
        base = out["runs"][0]
        directions = {
            s["label"]: load_scorer(ctx.platform.plugins, s["name"]).higher_is_better
            for s in base["scorers"]
        }
        shown = scorer if scorer in out["scorers"] else (out["scorers"] or [""])[0]
        inputs = {
            r.id: r.inputs
            for r in runs_api.run_results(
                base["id"], ctx, failed=False, scorer=None, below=None, cursor=None, limit=500
            ).items
        }
        return {
            "cmp": out,
            "charts": bar_charts(out["runs"], out["scorers"]),
            "shown": shown,
            "marks": verdicts(out["items"], shown, directions.get(shown, True)),
            "inputs": inputs,
            "directions": directions,
            "error": None,
        }

    try:
        values = await run_in_threadpool(load)
    except ShipyardError as exc:
        values = {"cmp": None, "error": exc.detail}
        return await _page(ctx, "eval_compare.html", "eval_runs", exc.status, **values)
    return await _page(ctx, "eval_compare.html", "eval_runs", **values)


@router.get("/evals/{run_id}", name="ui.eval_run")
async def run_page(
    run_id: str,
    ctx: Ctx = Authorized("evals:read"),
    failed: str = Query("", max_length=8),
    scorer: str = Query("", max_length=64),
    below: str = Query("", max_length=32),
    cursor: str = Query("", max_length=12),
) -> Response:
    f = {"failed": failed, "scorer": scorer, "below": below, "cursor": cursor}
    values = await run_in_threadpool(lambda: _run(ctx, run_id, f))
    return await _page(ctx, "eval_run.html", "eval_runs", **values)


@router.get("/evals/{run_id}/progress", name="ui.eval_progress")
async def progress(run_id: str, ctx: Ctx = Authorized("evals:read")) -> Response:
    """The progress panel the run page polls every second while the run is active;
    once it is not, the page reloads (aggregates and results are then final)."""
    run = await run_in_threadpool(lambda: runs_api.get_run(run_id, ctx))
    active = run.status in runs.ACTIVE
    response = templates.TemplateResponse(
        ctx.request, "eval_progress.html", {"actor": ctx.actor, "run": run, "active": active}
    )
    if not active:
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/evals/{run_id}/cancel", name="ui.eval_cancel")
async def cancel(run_id: str, ctx: Ctx = Authorized("evals:run")) -> Response:
    done, error = await run_in_threadpool(_attempt, ctx, lambda: runs_api.cancel_run(run_id, ctx))
    message = "Cancelled: what it finished stays readable." if done is not None else None
    f = {"failed": "", "scorer": "", "below": "", "cursor": ""}
    values = await run_in_threadpool(lambda: _run(ctx, run_id, f, error, message))
    return await _page(ctx, "eval_run.html", "eval_runs", **values)
