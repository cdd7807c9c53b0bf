"""Pipelines under /api/pipelines: versions (checked on save), their specs and diffs,
and invocation. Aliases, their history, rollback and promotion are the registry's
routes (`/api/registry/pipelines/...`): a pipeline is a registry asset of kind
`pipeline`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from shipyard.errors import InvalidInput
from shipyard.gateway.core.call import traceparent
from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.pipelines import yaml_spec
from shipyard.pipelines.service import Invocation, Pipelines
from shipyard.registry import assets
from shipyard.registry.api import change
from shipyard.registry.api.assets import add, version_public
from shipyard.registry.schemas import VersionCommon, VersionPublic

router = APIRouter(prefix="/api/pipelines", tags=["pipelines"])


class SpecSource(Strict):
    spec: dict[str, Any] | None = Field(default=None, description="the spec as an object")
    yaml: str | None = Field(
        default=None, max_length=yaml_spec.MAX_CHARS, description="the spec as YAML"
    )

    def raw(self) -> Any:
        if (self.spec is None) == (self.yaml is None):
            raise InvalidInput("spec: give 'spec' or 'yaml', one of them", param="spec")
        return self.spec if self.spec is not None else yaml_spec.load(self.yaml or "")


class PipelineVersionIn(VersionCommon, SpecSource):
    pass


class StepPublic(BaseModel):
    id: str
    type: str
    reads: list[str]  # the references in its configuration
    runs: list[str]  # the steps it runs itself (a branch's cases, a map's step)


class CheckedOut(BaseModel):
    ok: bool
    output: str
    chat_input: str | None
    inputs: dict[str, Any]
    steps: list[StepPublic]


class PipelinePublic(BaseModel):
    name: str
    description: str
    latest: int
    aliases: dict[str, int]
    steps: int  # in the latest version
    updated_at: datetime


class DiffOut(BaseModel):
    a: int
    b: int
    diff: list[str]


class InvokeIn(Strict):
    inputs: dict[str, Any] = Field(default_factory=dict, max_length=64)


class StepRun(BaseModel):
    step: str
    type: str
    status: str
    error: str
    attempts: int
    item: int | None
    offset_ms: float  # when it started, after the first step's start
    ms: float
    own_ms: float
    span_id: str
    parent_id: str
    input: str
    output: str


class InvokeOut(BaseModel):
    pipeline: str
    output: Any
    trace_id: str
    ms: float
    usage: dict[str, int]
    steps: list[StepRun]


def _service(ctx: Ctx) -> Pipelines:
    service: Pipelines = ctx.platform.services["pipelines"]
    return service


def checked_out(pipeline: Any) -> CheckedOut:
    return CheckedOut(
        ok=True,
        output=pipeline.output,
        chat_input=pipeline.chat_input,
        inputs={k: v.model_dump(exclude_none=True) for k, v in pipeline.inputs.items()},
        steps=[
            StepPublic(id=s.id, type=s.type, reads=[str(r) for r in s.refs], runs=list(s.targets))
            for s in pipeline.steps.values()
        ],
    )


def invocation_out(done: Invocation) -> InvokeOut:
    first = min((r.start_ns for r in done.steps), default=0)
    return InvokeOut(
        pipeline=done.pipeline,
        output=done.output,
        trace_id=done.trace_id,
        ms=round(done.ms, 3),
        usage=done.usage,
        steps=[step_run(r, first) for r in done.steps],
    )


def step_run(r: Any, first: int) -> StepRun:
    return StepRun(
        step=r.step,
        type=r.type,
        status=r.status,
        error=r.error,
        attempts=r.attempts,
        item=r.item,
        offset_ms=round((r.start_ns - first) / 1e6, 3),
        ms=round(r.ms, 3),
        own_ms=round(max(0, r.own_ns) / 1e6, 3),
        span_id=r.span_id,
        parent_id=r.parent_id,
        input=r.input,
        output=r.output,
    )


@router.get("", name="pipelines.list")
def list_pipelines(ctx: Ctx = Authorized("pipelines:read")) -> list[PipelinePublic]:
    with ctx.tx() as tx:
        out = []
        for row in assets.list_assets(tx.session, workspace_id=ctx.workspace_id, kind="pipeline"):
            steps = 0
            if row.latest:
                body = assets.get_version(tx.session, row, row.latest).body or {}
                steps = len((body.get("spec") or {}).get("steps") or [])
            out.append(
                PipelinePublic(
                    name=row.name,
                    description=row.description,
                    latest=row.latest,
                    aliases=assets.aliases(tx.session, row),
                    steps=steps,
                    updated_at=row.updated_at,
                )
            )
        return out


@router.post("/validate", name="pipelines.validate")
def validate(body: SpecSource, ctx: Ctx = Authorized("pipelines:write")) -> CheckedOut:
    """Check a spec without saving it: the error names the step at fault."""
    return checked_out(_service(ctx).compile(body.raw()))


@router.post("/{name}/versions", status_code=201, name="pipelines.version")
async def add_version(
    name: str, body: PipelineVersionIn, ctx: Ctx = Authorized("pipelines:write")
) -> VersionPublic:
    """A new immutable version (the pipeline is created on its first push), checked
    first: nothing is written for a spec that does not compile."""
    stored = checked_body(ctx, name, body.raw(), body.yaml)

    def work() -> VersionPublic:
        return add(ctx, "pipelines", name, stored, body, create=True)

    return await change(ctx, work)


def checked_body(ctx: Ctx, name: str, raw: Any, text: str | None) -> dict[str, Any]:
    """A version's body: the spec compiled (InvalidInput names the step) and its YAML,
    as sent or written out."""
    pipeline = _service(ctx).compile(raw, label=name)
    return {"spec": pipeline.spec, "yaml": text or yaml_spec.dump(pipeline.spec)}


@router.get("/{name}/versions/{number}", name="pipelines.version.get")
def get_version(
    name: str,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    ctx: Ctx = Authorized("pipelines:read"),
) -> VersionPublic:
    with ctx.tx() as tx:
        asset = assets.get_asset(
            tx.session, workspace_id=ctx.workspace_id, kind="pipeline", name=name
        )
        row = assets.get_version(tx.session, asset, number)
        return version_public(asset, row, assets.aliases(tx.session, asset))


@router.get("/{name}/diff", name="pipelines.diff")
def diff(
    name: str,
    a: Annotated[int, Query(ge=1, le=2**31 - 1)],
    b: Annotated[int, Query(ge=1, le=2**31 - 1)],
    ctx: Ctx = Authorized("pipelines:read"),
) -> DiffOut:
    """A unified diff between two versions' specs (as YAML)."""
    with ctx.tx() as tx:
        asset = assets.get_asset(
            tx.session, workspace_id=ctx.workspace_id, kind="pipeline", name=name
        )
        old = dict(assets.get_version(tx.session, asset, a).body)
        new = dict(assets.get_version(tx.session, asset, b).body)
    return DiffOut(a=a, b=b, diff=yaml_spec.diff(old["spec"], new["spec"], a=a, b=b))


@router.post("/{ref:path}/invoke", name="pipelines.invoke")
async def invoke(ref: str, body: InvokeIn, ctx: Ctx = Authorized("pipelines:invoke")) -> InvokeOut:
    """Run a version (`name`, `name@3`, `name@production`, `release@production/name`)
    with inputs; the steps' calls are governed as the caller's. The reply has the
    output, the trace and each step's input, output and timing."""
    if not 0 < len(ref) <= 300:
        raise InvalidInput("ref: must be a name[@version|@alias]", param="ref")
    trace = traceparent(ctx.request.headers.get("traceparent", "").encode())
    done = await _service(ctx).invoke(ctx.actor, ref, body.inputs, trace=trace)
    return invocation_out(done)
