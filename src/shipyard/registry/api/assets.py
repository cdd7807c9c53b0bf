"""Registered models, prompts and releases under /api/registry/{models|prompts|releases}:
the assets, their immutable versions, aliases, alias history and rollback. Thin routes
over `shipyard.registry.assets` and `shipyard.registry.promotion`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.http.deps import Authorized, Ctx
from shipyard.registry import assets, lineage, promotion
from shipyard.registry.api import change
from shipyard.registry.names import safe_name
from shipyard.registry.schemas import (
    AliasIn,
    AssetIn,
    AssetPublic,
    AssetUpdate,
    GgufSource,
    HuggingFaceSource,
    LoraSource,
    ModelVersionIn,
    MovePublic,
    ReleaseVersionIn,
    VersionPublic,
)
from shipyard.registry.tables import AssetRow, BlobRow, VersionRow

router = APIRouter(prefix="/api/registry", tags=["registry"])
Plural = Literal["models", "prompts", "releases", "pipelines"]
AliasName = Annotated[str, Path(pattern=assets.ALIAS)]


def kind_of(plural: str) -> str:
    return plural[:-1]


def who(ctx: Ctx) -> promotion.Who:
    return promotion.Who(
        ref=f"{ctx.actor.kind}:{ctx.actor.id}", label=ctx.actor.label, kind=ctx.actor.kind
    )


def asset_public(s: Session, row: AssetRow) -> AssetPublic:
    return AssetPublic(
        id=row.id,
        kind=row.kind,
        name=row.name,
        description=row.description,
        tags=dict(row.tags or {}),
        latest=row.latest,
        aliases=assets.aliases(s, row),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def version_public(asset: AssetRow, row: VersionRow, aliases: dict[str, int]) -> VersionPublic:
    return VersionPublic(
        id=row.id,
        kind=asset.kind,
        name=asset.name,
        number=row.number,
        body=dict(row.body),
        metadata=dict(row.metadata_ or {}),
        tags=dict(row.tags or {}),
        artifacts=list(row.artifacts or []),
        lineage=dict(row.lineage or {}),
        message=row.message,
        author=row.author,
        created_at=row.created_at,
        aliases=sorted(a for a, n in aliases.items() if n == row.number),
    )


def _asset(ctx: Ctx, s: Session, plural: str, name: str) -> AssetRow:
    return assets.get_asset(s, workspace_id=ctx.workspace_id, kind=kind_of(plural), name=name)


# Assets ----------------------------------------------------------------------------------


@router.get("/{plural}", name="registry.assets.list")
def list_assets(plural: Plural, ctx: Ctx = Authorized("registry:read")) -> list[AssetPublic]:
    with ctx.tx() as tx:
        rows = assets.list_assets(tx.session, workspace_id=ctx.workspace_id, kind=kind_of(plural))
        return [asset_public(tx.session, r) for r in rows]


@router.post("/{plural}", status_code=201, name="registry.assets.create")
async def create_asset(
    plural: Plural, body: AssetIn, ctx: Ctx = Authorized("registry:write")
) -> AssetPublic:
    def work() -> AssetPublic:
        with ctx.tx(target=f"{kind_of(plural)}:{body.name}") as tx:
            row = assets.create_asset(
                tx.session,
                workspace_id=ctx.workspace_id,
                kind=kind_of(plural),
                name=body.name,
                description=body.description,
                tags=body.tags,
                actor=ctx.actor.ref,
            )
            return asset_public(tx.session, row)

    return await change(ctx, work)


@router.get("/{plural}/{name}", name="registry.assets.get")
def get_asset(plural: Plural, name: str, ctx: Ctx = Authorized("registry:read")) -> AssetPublic:
    with ctx.tx() as tx:
        return asset_public(tx.session, _asset(ctx, tx.session, plural, name))


@router.patch("/{plural}/{name}", name="registry.assets.update")
async def update_asset(
    plural: Plural, name: str, body: AssetUpdate, ctx: Ctx = Authorized("registry:write")
) -> AssetPublic:
    def work() -> AssetPublic:
        with ctx.tx(target=f"{kind_of(plural)}:{name}") as tx:
            row = _asset(ctx, tx.session, plural, name)
            assets.update_asset(tx.session, row, description=body.description, tags=body.tags)
            return asset_public(tx.session, row)

    return await change(ctx, work)


@router.delete("/{plural}/{name}", status_code=204, name="registry.assets.delete")
async def delete_asset(
    plural: Plural, name: str, ctx: Ctx = Authorized("registry:write")
) -> Response:
    def work() -> None:
        with ctx.tx(target=f"{kind_of(plural)}:{name}") as tx:
            assets.delete_asset(tx.session, _asset(ctx, tx.session, plural, name))

    await change(ctx, work)
    return Response(status_code=204)


# Versions --------------------------------------------------------------------------------


def add(
    ctx: Ctx,
    plural: str,
    name: str,
    body: dict[str, Any],
    common: Any,
    *,
    create: bool = False,
    **extra: Any,
) -> VersionPublic:
    """A new version in its own audited transaction (the asset made first when `create`
    and it does not exist yet: a prompt's first push)."""
    with ctx.tx(target=f"{kind_of(plural)}:{name}") as tx:
        try:
            asset = _asset(ctx, tx.session, plural, name)
        except NotFound:
            if not create:
                raise
            assets.parse_ref(name, param="name")
            asset = assets.create_asset(
                tx.session,
                workspace_id=ctx.workspace_id,
                kind=kind_of(plural),
                name=name,
                actor=ctx.actor.ref,
            )
        row = assets.add_version(
            tx.session,
            asset,
            body=body,
            metadata=common.metadata,
            tags=common.tags,
            message=common.message,
            author=ctx.actor.ref,
            **extra,
        )
        tx.detail = f"version {row.number}"
        return version_public(asset, row, {})


@router.post("/models/{name}/versions", status_code=201, name="registry.models.version")
async def add_model_version(
    name: str, body: ModelVersionIn, ctx: Ctx = Authorized("registry:write")
) -> VersionPublic:
    """A new immutable version: its source (what serves it), parameters, artifacts
    (already uploaded, by checksum) and lineage."""

    def work() -> VersionPublic:
        with ctx.platform.db.transaction() as s:
            _check_artifacts(s, ctx.workspace_id, body)
        return add(
            ctx,
            "models",
            name,
            {"source": body.source.model_dump(), "params": body.params},
            body,
            artifacts=[a.model_dump() for a in body.artifacts],
            lineage=body.lineage.model_dump(exclude_defaults=True),
        )

    return await change(ctx, work)


def _check_artifacts(s: Session, workspace_id: str, body: ModelVersionIn) -> None:
    """Every artifact a version names was uploaded to this workspace, under a safe name."""
    wanted = [(f"artifacts.{i}", a.sha256) for i, a in enumerate(body.artifacts)]
    for i, a in enumerate(body.artifacts):
        safe_name(a.name, param=f"artifacts.{i}.name")
    source = body.source
    if isinstance(source, GgufSource | LoraSource):
        wanted.append(("source.artifact", source.artifact))
    elif isinstance(source, HuggingFaceSource):
        wanted += [(f"source.artifacts.{i}", sha) for i, sha in enumerate(source.artifacts)]
    for where, sha256 in wanted:
        if s.get(BlobRow, (workspace_id, sha256)) is None:
            raise InvalidInput(f"{where}: no artifact {sha256} was uploaded to this workspace")


@router.post("/releases/{name}/versions", status_code=201, name="registry.releases.version")
async def add_release_version(
    name: str, body: ReleaseVersionIn, ctx: Ctx = Authorized("registry:write")
) -> VersionPublic:
    """A release pins versions of models and prompts: what was evaluated together ships
    together. Every member must exist."""

    def work() -> VersionPublic:
        with ctx.platform.db.transaction() as s:
            for i, m in enumerate(body.members):
                member = assets.get_asset(
                    s, workspace_id=ctx.workspace_id, kind=m.kind, name=m.name
                )
                try:
                    assets.get_version(s, member, m.version)
                except NotFound as exc:
                    raise InvalidInput(f"members.{i}: {exc.detail}") from None
        members = [m.model_dump() for m in body.members]
        return add(ctx, "releases", name, {"members": members}, body)

    return await change(ctx, work)


@router.get("/{plural}/{name}/versions", name="registry.versions.list")
def list_versions(
    plural: Plural, name: str, ctx: Ctx = Authorized("registry:read")
) -> list[VersionPublic]:
    with ctx.tx() as tx:
        asset = _asset(ctx, tx.session, plural, name)
        aliases = assets.aliases(tx.session, asset)
        return [version_public(asset, v, aliases) for v in assets.list_versions(tx.session, asset)]


@router.get("/{plural}/{name}/versions/{number}", name="registry.versions.get")
def get_version(
    plural: Plural,
    name: str,
    number: Annotated[int, Path(ge=1, le=10**9)],
    ctx: Ctx = Authorized("registry:read"),
) -> VersionPublic:
    with ctx.tx() as tx:
        asset = _asset(ctx, tx.session, plural, name)
        row = assets.get_version(tx.session, asset, number)
        return version_public(asset, row, assets.aliases(tx.session, asset))


@router.get("/{plural}/{name}/versions/{number}/lineage", name="registry.versions.lineage")
def get_lineage(
    plural: Plural,
    name: str,
    number: Annotated[int, Path(ge=1, le=10**9)],
    ctx: Ctx = Authorized("registry:read"),
) -> dict[str, Any]:
    """The version's lineage as a graph: `nodes` and `edges` (`from` input `to` what was
    made of it: base_of, trained_on, produced, evaluated_by, pinned_in, default_model_of)."""
    with ctx.tx() as tx:
        asset = _asset(ctx, tx.session, plural, name)
        version = assets.get_version(tx.session, asset, number)
        return lineage.graph(tx.session, asset, version, ctx.platform.lineage_sources)


@router.get("/{plural}/{name}/resolve/{selector}", name="registry.resolve")
def resolve(
    plural: Plural, name: str, selector: str, ctx: Ctx = Authorized("registry:read")
) -> VersionPublic:
    """`name@selector` now: an alias (`production`), a number, or `latest`."""
    ref = assets.parse_ref(f"{name}@{selector}", param="selector")
    with ctx.tx() as tx:
        asset, row = assets.resolve(
            tx.session, workspace_id=ctx.workspace_id, kind=kind_of(plural), ref=ref
        )
        return version_public(asset, row, assets.aliases(tx.session, asset))


# Aliases ---------------------------------------------------------------------------------


@router.put("/{plural}/{name}/aliases/{alias}", name="registry.aliases.put")
async def set_alias(
    plural: Plural,
    name: str,
    alias: AliasName,
    body: AliasIn,
    ctx: Ctx = Authorized("registry:write"),
) -> AssetPublic:
    """A custom alias (`champion`, `canary`). An environment's alias moves only through a
    promotion (its gates and approvals)."""

    def work() -> AssetPublic:
        with ctx.tx(target=f"{kind_of(plural)}:{name}@{alias}") as tx:
            asset = _asset(ctx, tx.session, plural, name)
            if promotion.is_environment(tx.session, workspace_id=ctx.workspace_id, alias=alias):
                raise Conflict(
                    f"alias: '{alias}' is an environment; request a promotion to move it",
                    code="use_promotion",
                )
            assets.move_alias(
                tx.session,
                asset,
                alias=alias,
                number=body.version,
                reason="set",
                actor=ctx.actor.ref,
                actor_kind=ctx.actor.kind,
            )
            return asset_public(tx.session, asset)

    return await change(ctx, work)


@router.delete("/{plural}/{name}/aliases/{alias}", status_code=204, name="registry.aliases.delete")
async def delete_alias(
    plural: Plural, name: str, alias: AliasName, ctx: Ctx = Authorized("registry:approve")
) -> Response:
    """Removing an alias stops the traffic that names it: approvers only."""

    def work() -> None:
        with ctx.tx(target=f"{kind_of(plural)}:{name}@{alias}") as tx:
            asset = _asset(ctx, tx.session, plural, name)
            assets.move_alias(
                tx.session,
                asset,
                alias=alias,
                number=None,
                reason="removed",
                actor=ctx.actor.ref,
                actor_kind=ctx.actor.kind,
            )

    await change(ctx, work)
    return Response(status_code=204)


def roll_back(ctx: Ctx, tx: Any, kind: str, name: str, alias: str) -> tuple[AssetRow, int]:
    """Roll `name@alias` back in `tx`; the asset and the version it points at now. The
    API and the UI both roll back through this."""
    asset = assets.get_asset(tx.session, workspace_id=ctx.workspace_id, kind=kind, name=name)
    number = promotion.rollback(tx.session, asset, alias=alias, who=who(ctx))
    tx.detail = f"rolled back to version {number}"
    return asset, number


@router.post("/{plural}/{name}/aliases/{alias}/rollback", name="registry.aliases.rollback")
async def rollback(
    plural: Plural, name: str, alias: AliasName, ctx: Ctx = Authorized("registry:approve")
) -> AssetPublic:
    """Point the alias back at the version it pointed at before (one call; audited)."""

    def work() -> AssetPublic:
        with ctx.tx(target=f"{kind_of(plural)}:{name}@{alias}") as tx:
            asset, _ = roll_back(ctx, tx, kind_of(plural), name, alias)
            return asset_public(tx.session, asset)

    return await change(ctx, work)


@router.get("/{plural}/{name}/history", name="registry.aliases.history")
def alias_history(
    plural: Plural, name: str, ctx: Ctx = Authorized("registry:read")
) -> list[MovePublic]:
    with ctx.tx() as tx:
        asset = _asset(ctx, tx.session, plural, name)
        return [
            MovePublic(
                alias=m.alias,
                from_version=m.from_version,
                to_version=m.to_version,
                reason=m.reason,
                actor=m.actor,
                promotion_id=m.promotion_id,
                at=m.at,
            )
            for m in assets.history(tx.session, asset)
        ]
