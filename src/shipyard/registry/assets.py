"""Registered models, prompts and releases ("assets"), their immutable versions and
their aliases. Keyword-only functions over the caller's session; a change that can move
gateway traffic (an alias, a new version a route names) bumps the gateway's
configuration version, so every replica resolves its routes again.

A reference is `name` (the latest version), `name@3` / `name@v3` (a version) or
`name@alias` (an environment such as `production`, or a custom alias such as
`champion`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.audit.service import Entry, record
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.gateway.config.snapshot import bump_version
from shipyard.registry.events import emit
from shipyard.registry.tables import AliasMoveRow, AliasRow, AssetRow, VersionRow
from shipyard.store import new_id, utcnow

KINDS = ("model", "prompt", "release", "pipeline")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ALIAS = r"^[a-z][a-z0-9_-]{0,63}$"
_NAME, _ALIAS = re.compile(NAME), re.compile(ALIAS)
_NUMBER = re.compile(r"^v?([0-9]{1,9})$")
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    selector: str | None  # None: latest; "3": a version number; else an alias

    @property
    def number(self) -> int | None:
        m = _NUMBER.match(self.selector or "")
        return int(m.group(1)) if m else None

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"


def parse_ref(raw: str, *, param: str = "ref") -> Ref:
    name, at, selector = raw.partition("@")
    if not _NAME.match(name):
        raise InvalidInput(f"{param}: '{raw[:140]}' is not a name[@version|@alias]", param=param)
    if not at or selector == LATEST:
        return Ref(name, None)
    if not (_NUMBER.match(selector) or _ALIAS.match(selector)):
        raise InvalidInput(f"{param}: '{selector[:70]}' is neither a version nor an alias")
    m = _NUMBER.match(selector)
    return Ref(name, m.group(1) if m else selector)


# Assets ----------------------------------------------------------------------------------


def get_asset(s: Session, *, workspace_id: str, kind: str, name: str) -> AssetRow:
    row = s.scalars(
        select(AssetRow).where(
            AssetRow.workspace_id == workspace_id, AssetRow.kind == kind, AssetRow.name == name
        )
    ).first()
    if row is None:
        raise NotFound(f"{kind} '{name}' not found")
    return row


def list_assets(s: Session, *, workspace_id: str, kind: str) -> list[AssetRow]:
    return list(
        s.scalars(
            select(AssetRow)
            .where(AssetRow.workspace_id == workspace_id, AssetRow.kind == kind)
            .order_by(AssetRow.name)
        )
    )


def create_asset(
    s: Session,
    *,
    workspace_id: str,
    kind: str,
    name: str,
    description: str = "",
    tags: dict[str, Any] | None = None,
    actor: str = "",
) -> AssetRow:
    if kind not in KINDS:
        raise InvalidInput(f"kind: one of {', '.join(KINDS)}")
    existing = s.scalars(
        select(AssetRow.id).where(
            AssetRow.workspace_id == workspace_id, AssetRow.kind == kind, AssetRow.name == name
        )
    ).first()
    if existing is not None:
        raise Conflict(f"{kind} '{name}' already exists", param="name")
    row = AssetRow(
        id=new_id(kind[:3]),
        workspace_id=workspace_id,
        kind=kind,
        name=name,
        description=description,
        tags=dict(tags or {}),
        latest=0,
        created_by=actor,
    )
    s.add(row)
    s.flush()
    return row


def update_asset(
    s: Session, asset: AssetRow, *, description: str | None, tags: dict[str, Any] | None
) -> AssetRow:
    """Only the asset's description and tags change; versions never do."""
    if description is not None:
        asset.description = description
    if tags is not None:
        asset.tags = dict(tags)
    asset.updated_at = utcnow()
    return asset


def delete_asset(s: Session, asset: AssetRow) -> None:
    aliases = s.scalars(select(AliasRow.alias).where(AliasRow.asset_id == asset.id)).all()
    if aliases:
        raise Conflict(
            f"{asset.kind} '{asset.name}' still has aliases ({', '.join(sorted(aliases))}):"
            " remove them first"
        )
    s.delete(asset)
    bump_version(s)


# Versions --------------------------------------------------------------------------------


def add_version(
    s: Session,
    asset: AssetRow,
    *,
    body: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    artifacts: list[dict[str, Any]] | None = None,
    lineage: dict[str, Any] | None = None,
    message: str = "",
    author: str = "",
) -> VersionRow:
    """The asset's next version (numbered from 1). Immutable once written."""
    # the row lock (PostgreSQL) or the write lock (SQLite) orders concurrent versions;
    # the unique (asset, number) refuses what slips through
    if s.get_bind().dialect.name == "postgresql":
        s.refresh(asset, with_for_update=True)
    number = asset.latest + 1
    row = VersionRow(
        id=new_id("ver"),
        asset_id=asset.id,
        number=number,
        body=body,
        metadata_=dict(metadata or {}),
        tags=dict(tags or {}),
        artifacts=list(artifacts or []),
        lineage=dict(lineage or {}),
        message=message,
        author=author,
    )
    s.add(row)
    asset.latest, asset.updated_at = number, utcnow()
    s.flush()
    emit(
        s,
        workspace_id=asset.workspace_id,
        event="version.created",
        data={"kind": asset.kind, "name": asset.name, "version": number, "author": author},
    )
    bump_version(s)  # a route may name `name` (the latest version)
    return row


def list_versions(s: Session, asset: AssetRow) -> list[VersionRow]:
    return list(
        s.scalars(
            select(VersionRow).where(VersionRow.asset_id == asset.id).order_by(VersionRow.number)
        )
    )


def get_version(s: Session, asset: AssetRow, number: int) -> VersionRow:
    row = s.scalars(
        select(VersionRow).where(VersionRow.asset_id == asset.id, VersionRow.number == number)
    ).first()
    if row is None:
        raise NotFound(f"{asset.kind} '{asset.name}' has no version {number}")
    return row


def resolve(s: Session, *, workspace_id: str, kind: str, ref: Ref) -> tuple[AssetRow, VersionRow]:
    """The asset and version a reference names now."""
    asset = get_asset(s, workspace_id=workspace_id, kind=kind, name=ref.name)
    if ref.selector is None:
        if asset.latest == 0:
            raise NotFound(f"{kind} '{asset.name}' has no versions yet")
        return asset, get_version(s, asset, asset.latest)
    number = ref.number
    if number is not None:
        return asset, get_version(s, asset, number)
    alias = s.get(AliasRow, (asset.id, ref.selector))
    if alias is None:
        raise NotFound(f"{kind} '{asset.name}' has no alias '{ref.selector}'")
    version = s.get(VersionRow, alias.version_id)
    assert version is not None  # a foreign key
    return asset, version


def resolve_member(
    s: Session, *, workspace_id: str, kind: str, raw: str, param: str = "ref"
) -> tuple[AssetRow, VersionRow]:
    """`name@alias` of `kind`, or `release@alias/member`: the version of `member` that
    the release version `release@alias` pins (what was evaluated together ships
    together)."""
    head, slash, member = raw.partition("/")
    if not slash:
        return resolve(s, workspace_id=workspace_id, kind=kind, ref=parse_ref(raw, param=param))
    _, release = resolve(
        s, workspace_id=workspace_id, kind="release", ref=parse_ref(head, param=param)
    )
    for m in (release.body or {}).get("members") or []:
        if m.get("kind") == kind and m.get("name") == member:
            asset = get_asset(s, workspace_id=workspace_id, kind=kind, name=member)
            return asset, get_version(s, asset, int(m["version"]))
    raise NotFound(f"release {head} (v{release.number}) pins no {kind} named '{member[:128]}'")


# Aliases ---------------------------------------------------------------------------------


def aliases(s: Session, asset: AssetRow) -> dict[str, int]:
    """alias -> version number."""
    rows = s.execute(
        select(AliasRow.alias, VersionRow.number)
        .join(VersionRow, VersionRow.id == AliasRow.version_id)
        .where(AliasRow.asset_id == asset.id)
        .order_by(AliasRow.alias)
    )
    return {alias: number for alias, number in rows}


def move_alias(
    s: Session,
    asset: AssetRow,
    *,
    alias: str,
    number: int | None,
    reason: str,
    actor: str,
    actor_kind: str = "user",
    promotion_id: str | None = None,
) -> AliasMoveRow:
    """Point `alias` at version `number` (None removes it); the move is kept (rollback
    reads it), audited in the caller's transaction, and moves gateway traffic."""
    if not _ALIAS.match(alias) or alias == LATEST:
        raise InvalidInput(f"alias: '{alias[:70]}' must match {ALIAS} and not be 'latest'")
    row = s.get(AliasRow, (asset.id, alias))
    before = None
    if row is not None:
        current = s.get(VersionRow, row.version_id)
        before = current.number if current is not None else None
    if number is None:
        if row is None:
            raise NotFound(f"{asset.kind} '{asset.name}' has no alias '{alias}'")
        s.delete(row)
    else:
        version = get_version(s, asset, number)
        if row is None:
            row = AliasRow(asset_id=asset.id, alias=alias, version_id=version.id)
            s.add(row)
        row.version_id, row.updated_by, row.updated_at = version.id, actor, utcnow()
    move = AliasMoveRow(
        id=new_id("mov"),
        asset_id=asset.id,
        alias=alias,
        from_version=before,
        to_version=number,
        reason=reason,
        actor=actor,
        promotion_id=promotion_id,
    )
    s.add(move)
    record(
        s,
        Entry(
            actor=actor,
            actor_kind=actor_kind,
            action="registry.alias.move",
            outcome="success",
            status=200,
            workspace_id=asset.workspace_id,
            target=f"{asset.kind}:{asset.name}@{alias}",
            detail=f"{before} -> {number} ({reason})",
        ),
    )
    emit(
        s,
        workspace_id=asset.workspace_id,
        event="alias.rolled_back" if reason == "rollback" else "alias.moved",
        data={
            "kind": asset.kind,
            "name": asset.name,
            "alias": alias,
            "from_version": before,
            "to_version": number,
            "reason": reason,
            "actor": actor,
            "promotion_id": promotion_id,
        },
    )
    s.flush()
    bump_version(s)
    return move


def history(s: Session, asset: AssetRow, alias: str | None = None) -> list[AliasMoveRow]:
    query = select(AliasMoveRow).where(AliasMoveRow.asset_id == asset.id)
    if alias is not None:
        query = query.where(AliasMoveRow.alias == alias)
    return list(s.scalars(query.order_by(AliasMoveRow.at.desc(), AliasMoveRow.id.desc())))


def previous(s: Session, asset: AssetRow, alias: str) -> int:
    """The version `alias` pointed at before its current one (what a rollback restores)."""
    current = aliases(s, asset).get(alias)
    if current is None:
        raise NotFound(f"{asset.kind} '{asset.name}' has no alias '{alias}'")
    for move in history(s, asset, alias):
        if move.to_version == current and move.from_version not in (None, current):
            assert move.from_version is not None
            return move.from_version
    raise Conflict(f"{asset.name}@{alias} has no earlier version to roll back to")
