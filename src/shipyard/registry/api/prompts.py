"""Prompt versions, rendering and diffs under /api/registry/prompts (the rest of a
prompt's routes are the assets' ones: list, get, versions, aliases, history)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from shipyard.http.deps import Authorized, Ctx
from shipyard.inputs import Strict
from shipyard.registry import assets, templates
from shipyard.registry.api import change
from shipyard.registry.api.assets import add
from shipyard.registry.prompts import PromptVersionIn, template_of
from shipyard.registry.schemas import VersionPublic

router = APIRouter(prefix="/api/registry/prompts", tags=["registry"])


class RenderIn(Strict):
    version: str = Field(default="latest", max_length=70, description="alias, number or latest")
    variables: dict[str, Any] = Field(default_factory=dict)


class RenderOut(BaseModel):
    prompt: str  # the version that rendered: "name@v3"
    version: int
    rendered: templates.Rendered
    model: str | None
    params: dict[str, Any]


class DiffOut(BaseModel):
    a: int
    b: int
    diff: list[str]


@router.post("/{name}/versions", status_code=201, name="registry.prompts.version")
async def add_prompt_version(
    name: str, body: PromptVersionIn, ctx: Ctx = Authorized("registry:write")
) -> VersionPublic:
    """A new immutable version (the prompt is created on its first push). The template
    must parse, and every variable it reads must be declared (or the schema is left out
    and inferred: each variable a required string)."""
    checked = body.body()  # before any write: a bad template changes nothing

    def work() -> VersionPublic:
        return add(ctx, "prompts", name, checked, body, create=True)

    return await change(ctx, work)


@router.post("/{name}/render", name="registry.prompts.render")
def render(name: str, body: RenderIn, ctx: Ctx = Authorized("registry:read")) -> RenderOut:
    """Render a version with variables, in the sandbox (what the gateway sends)."""
    ref = assets.parse_ref(f"{name}@{body.version}", param="version")
    with ctx.tx() as tx:
        asset, row = assets.resolve(
            tx.session, workspace_id=ctx.workspace_id, kind="prompt", ref=ref
        )
        stored = dict(row.body)
    rendered = templates.render(template_of(stored), body.variables)
    return RenderOut(
        prompt=f"{asset.name}@v{row.number}",
        version=row.number,
        rendered=rendered,
        model=stored.get("model"),
        params=dict(stored.get("params") or {}),
    )


@router.get("/{name}/diff", name="registry.prompts.diff")
def diff(
    name: str,
    a: Annotated[int, Query(ge=1, le=10**9)],
    b: Annotated[int, Query(ge=1, le=10**9)],
    ctx: Ctx = Authorized("registry:read"),
) -> DiffOut:
    """A unified diff between two versions (template parts, then the variables)."""
    with ctx.tx() as tx:
        asset = assets.get_asset(
            tx.session, workspace_id=ctx.workspace_id, kind="prompt", name=name
        )
        old = dict(assets.get_version(tx.session, asset, a).body)
        new = dict(assets.get_version(tx.session, asset, b).body)
    lines = templates.diff(template_of(old), template_of(new), a_label=f"v{a}", b_label=f"v{b}")
    extra = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in ("model", "params")
        if old.get(k) != new.get(k)
    ]
    return DiffOut(a=a, b=b, diff=lines + extra)
