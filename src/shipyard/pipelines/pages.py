"""Pipelines in the UI, under /pipelines: the list with a form to push a version (YAML);
per pipeline its versions and aliases, the chosen version's spec and step graph, a diff
between two versions, the evaluation runs that targeted it, and a run playground that
shows each step's input, output and timing (as a waterfall) with a link to the trace.
Changes go through the API's functions (the same checks and audit); a refusal is a
message on the page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from starlette.responses import Response

from shipyard.errors import InvalidInput, PermissionDenied, ShipyardError
from shipyard.evaluation.tables import RunRow
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import check_value
from shipyard.pipelines import yaml_spec
from shipyard.pipelines.api import routes as api
from shipyard.pipelines.engine import StepFailed
from shipyard.registry import assets
from shipyard.registry.api.assets import add
from shipyard.registry.schemas import VersionCommon
from shipyard.ui.router import _audit_ui_failure, render

router = APIRouter(include_in_schema=False, prefix="/pipelines")
MAX_FORM = yaml_spec.MAX_CHARS


def _list_page(
    ctx: Ctx,
    *,
    error: str | None = None,
    message: str | None = None,
    draft: dict[str, str] | None = None,
) -> Response:
    return render(
        ctx, "pipelines_list.html", "pipelines", 400 if error else 200,
        pipelines=api.list_pipelines(ctx), error=error, message=message, draft=draft or {},
    )  # fmt: skip


def _detail(ctx: Ctx, name: str, version: int | None) -> dict[str, Any]:
    with ctx.tx() as tx:
        s = tx.session
        asset = assets.get_asset(s, workspace_id=ctx.workspace_id, kind="pipeline", name=name)
        aliases = assets.aliases(s, asset)
        versions = list(reversed(assets.list_versions(s, asset)))
        number = version or asset.latest
        chosen = next((v for v in versions if v.number == number), None)
        if chosen is None:
            raise InvalidInput(f"v: {name} has no version {number}")
        runs = s.scalars(
            select(RunRow)
            .where(
                RunRow.workspace_id == ctx.workspace_id,
                RunRow.target_label.like(f"pipeline:{_like(name)}%", escape="\\"),
            )
            .order_by(RunRow.created_at.desc())
            .limit(20)
        ).all()
        body = dict(chosen.body)
        return {
            "asset": asset,
            "aliases": aliases,
            "versions": versions,
            "chosen": chosen,
            "yaml": body.get("yaml") or yaml_spec.dump(body["spec"]),
            "checked": api.checked_out(ctx.platform.services["pipelines"].compile(body["spec"])),
            "runs": [r for r in runs if _targets(r, name)],
        }


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _targets(run: RunRow, name: str) -> bool:
    ref = str((run.target or {}).get("ref") or "")
    return ref.partition("@")[0] == name or ref.partition("/")[2] == name


def _page(
    ctx: Ctx, name: str, version: int | None = None, status: int = 200, **values: Any
) -> Response:
    return render(
        ctx, "pipeline_detail.html", "pipelines", status, **_detail(ctx, name, version), **values
    )


@router.get("", name="ui.pipelines")
def pipelines(ctx: Ctx = Authorized("pipelines:read")) -> Response:
    return _list_page(ctx)


@router.post("", name="ui.pipelines_push")
async def push(
    name: str = Form(max_length=128),
    spec: str = Form(max_length=MAX_FORM),
    message: str = Form("", max_length=2000),
    ctx: Ctx = Authorized("pipelines:write"),
) -> Response:
    draft = {"name": name, "spec": spec, "message": message}

    def work() -> Response:
        name_ = name.strip()
        stored = api.checked_body(ctx, name_, yaml_spec.load(spec), spec)
        version = add(
            ctx,
            "pipelines",
            name_,
            stored,
            VersionCommon(metadata={}, tags={}, message=message),
            create=True,
        )
        return _list_page(ctx, message=f"Pushed {version.name}@v{version.number}.")

    try:
        response: Response = await run_in_threadpool(work)
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        detail = exc.detail
        return await run_in_threadpool(lambda: _list_page(ctx, error=detail, draft=draft))
    await ctx.platform.gateway.reload()
    return response


@router.get("/{name}", name="ui.pipeline")
def pipeline(
    name: str,
    v: int | None = Query(None, ge=1, le=2**31 - 1),
    a: int | None = Query(None, ge=1, le=2**31 - 1),
    b: int | None = Query(None, ge=1, le=2**31 - 1),
    ctx: Ctx = Authorized("pipelines:read"),
) -> Response:
    diff = None
    if a is not None and b is not None:
        diff = api.diff(name, a, b, ctx)
    return _page(ctx, name, v, diff=diff)


@router.post("/{name}/run", name="ui.pipeline_run")
async def run(request: Request, name: str, ctx: Ctx = Authorized("pipelines:invoke")) -> Response:
    """The playground: the form's fields are the inputs (`in.<name>`), `ref` the
    version or alias to run."""
    if not ctx.actor.can("pipelines:read"):  # the page shows the spec and its versions
        raise PermissionDenied(f"the {ctx.actor.role.value} role cannot read pipelines")
    form = await request.form()
    selector = str(form.get("ref") or "latest")[:70]
    given = {
        k[3:]: str(v)[:100_000] for k, v in form.items() if k.startswith("in.") and len(k) < 70
    }
    ref = f"{name}@{selector}"
    result, error = None, None
    try:
        pipeline = await run_in_threadpool(
            ctx.platform.services["pipelines"].get, ctx.workspace_id, ref
        )
        inputs = _typed(pipeline, given)
        result = api.invocation_out(
            await ctx.platform.services["pipelines"].invoke(ctx.actor, ref, inputs)
        )
    except ShipyardError as exc:
        _audit_ui_failure(ctx, exc)
        error = exc.detail
        if isinstance(exc, StepFailed):
            error = f"{exc.detail} (step {exc.step})"
    return await run_in_threadpool(
        lambda: _page(
            ctx,
            name,
            None,
            400 if error else 200,
            result=result,
            run_error=error,
            given=given,
            selector=selector,
        )
    )


def _typed(pipeline: Any, given: dict[str, str]) -> dict[str, Any]:
    """Form text as the inputs' declared types (a number, a JSON list...)."""
    import orjson

    out: dict[str, Any] = {}
    for name, text in given.items():
        spec = pipeline.inputs.get(name)
        if spec is None or (text == "" and not spec.required):
            continue
        if spec.type == "string":
            out[name] = text
            continue
        try:
            out[name] = orjson.loads(text)
            check_value(out[name])
        except (orjson.JSONDecodeError, ValueError):
            raise InvalidInput(f"inputs.{name}: '{text[:40]}' is not a {spec.type}") from None
    return out
