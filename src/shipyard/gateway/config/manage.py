"""Gateway configuration services: providers, routes, prices, limits, records.
Keyword-only functions over a session; every change bumps the config version so each
replica reloads its snapshot."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shipyard.crypto import SecretBox
from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shipyard.gateway.config.schemas import (
    LimitsIn,
    PriceIn,
    ProviderCreate,
    ProviderUpdate,
    RouteIn,
)
from shipyard.gateway.config.snapshot import bump_version
from shipyard.gateway.config.vendors import default_base_url
from shipyard.gateway.providers.litellm_provider import model_problem
from shipyard.gateway.providers.urlcheck import check_base_url
from shipyard.gateway.tables import (
    DeploymentRow,
    LimitRow,
    PriceRow,
    ProviderRow,
    RouteRow,
)
from shipyard.identity import service as identity
from shipyard.plugins import RouteResolver
from shipyard.store import new_id, utcnow

REMOTE_KINDS = {"openai", "anthropic", "gemini", "litellm"}  # need a base URL
LOCAL_KINDS = {"llama_cpp", "sentence_transformers"}  # load files from the server's disk
# kinds that reach beyond a workspace: the server's disk, or (litellm) a library that
# connects outside Shipyard's checks and reads the host's environment
PLATFORM_KINDS = LOCAL_KINDS | {"litellm"}
_PATH = re.compile(r"^/[A-Za-z0-9_.{}/-]*$")


def _check_privileges(
    *, platform: bool, kind: str, allow_internal: bool, options: dict[str, Any]
) -> None:
    """What only a platform administrator (`gateway:internal`) may configure: internal
    addresses, models loaded from the server's disk, the litellm provider. Path
    overrides are checked for everyone. Refused before anything is looked at, so the
    answer says nothing about the server (whether a file exists)."""
    for op, path in (options.get("paths") or {}).items():
        if not isinstance(path, str) or not _PATH.match(path) or "//" in path:
            raise InvalidInput(f"options.paths.{op}: must be a path starting with '/'")
    if platform:
        return
    if allow_internal:
        raise PermissionDenied(
            "allow_internal: only a platform administrator may allow internal addresses"
        )
    if kind in LOCAL_KINDS:
        raise PermissionDenied(
            f"kind: only a platform administrator may configure {kind} (it reads files "
            "on the server)"
        )
    if kind in PLATFORM_KINDS:
        raise PermissionDenied(f"kind: only a platform administrator may configure {kind}")


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# headers that steer the connection or its framing rather than carry credentials
_RESERVED_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "expect",
    "proxy-authorization",
    "proxy-connection",
}


def _check_headers(headers: dict[str, str] | None) -> None:
    if not headers:
        return
    if len(headers) > 50:
        raise InvalidInput("headers: at most 50")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise InvalidInput(f"headers.{name[:100]}: not a header name a provider may set")
        if len(value) > 4000 or any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
            raise InvalidInput(f"headers.{name}: at most 4000 characters, no control characters")


def _check_kind(kind: str, kinds: Collection[str]) -> None:
    if kind not in kinds:
        raise InvalidInput(
            f"kind: unknown provider kind '{kind}'; known: " + ", ".join(sorted(kinds))
        )


def create_provider(
    s: Session,
    *,
    box: SecretBox,
    kinds: Collection[str],
    workspace_id: str,
    body: ProviderCreate,
    platform: bool,
) -> ProviderRow:
    _check_kind(body.kind, kinds)
    _check_privileges(
        platform=platform, kind=body.kind, allow_internal=body.allow_internal, options=body.options
    )
    _check_headers(body.headers)
    base_url = body.base_url or default_base_url(body.kind)
    if body.kind in REMOTE_KINDS or base_url:
        if not base_url:
            raise InvalidInput("base_url: required for this provider kind")
        base_url = check_base_url(base_url, allow_internal=body.allow_internal)
    if body.kind == "litellm" and not body.api_key:
        raise InvalidInput("api_key: required for litellm (it never uses the host's credentials)")
    if s.scalars(
        select(ProviderRow).where(
            ProviderRow.workspace_id == workspace_id, ProviderRow.name == body.name
        )
    ).first():
        raise Conflict(f"a provider named '{body.name}' already exists")
    row = ProviderRow(
        id=new_id("prv"),
        workspace_id=workspace_id,
        name=body.name,
        kind=body.kind,
        base_url=base_url,
        api_key_enc=box.seal(body.api_key) if body.api_key else None,
        headers={k: box.seal(v) for k, v in body.headers.items()},
        options=body.options,
        allow_internal=body.allow_internal,
    )
    s.add(row)
    s.flush()
    bump_version(s)
    return row


def get_provider(s: Session, *, workspace_id: str, name: str) -> ProviderRow:
    row = s.scalars(
        select(ProviderRow).where(
            ProviderRow.workspace_id == workspace_id, ProviderRow.name == name
        )
    ).first()
    if row is None:
        raise NotFound(f"provider '{name}' not found")
    return row


def update_provider(
    s: Session,
    *,
    box: SecretBox,
    workspace_id: str,
    name: str,
    body: ProviderUpdate,
    platform: bool,
) -> ProviderRow:
    row = get_provider(s, workspace_id=workspace_id, name=name)
    allow = body.allow_internal if body.allow_internal is not None else row.allow_internal
    options = body.options if body.options is not None else row.options
    # where an internal provider connects is a platform admin's call; its key is not
    moves = body.base_url is not None or body.allow_internal is not None or body.options is not None
    _check_privileges(
        platform=platform, kind=row.kind, allow_internal=allow and moves, options=options
    )
    _check_headers(body.headers)
    url = row.base_url
    if body.base_url is not None or body.allow_internal is not None:
        url = body.base_url if body.base_url is not None else row.base_url
        url = check_base_url(url, allow_internal=allow) if url else ""
        if not url and row.kind in REMOTE_KINDS:
            raise InvalidInput("base_url: required for this provider kind")
    # The stored key and headers were given for one server: pointed elsewhere (or spoken
    # to in another vendor's way), they are cleared unless this request gives new ones,
    # so nobody can send another admin's write-only key to a server of their choosing.
    profile = (row.options or {}).get("profile")
    if url != row.base_url or (options or {}).get("profile") != profile:
        if body.api_key is None:
            row.api_key_enc = None
        if body.headers is None:
            row.headers = {}
    row.base_url = url
    row.allow_internal = allow
    if body.api_key is not None:
        row.api_key_enc = box.seal(body.api_key) if body.api_key else None
    if body.headers is not None:
        row.headers = {k: box.seal(v) for k, v in body.headers.items()}
    if body.options is not None:
        row.options = body.options
    if row.kind == "litellm" and row.api_key_enc is None:
        raise InvalidInput("api_key: required for litellm (it never uses the host's credentials)")
    row.updated_at = utcnow()
    s.flush()
    bump_version(s)
    return row


def delete_provider(s: Session, *, workspace_id: str, name: str) -> None:
    row = get_provider(s, workspace_id=workspace_id, name=name)
    used = s.scalar(
        select(func.count()).select_from(DeploymentRow).where(DeploymentRow.provider_id == row.id)
    )
    if used:
        raise Conflict(f"provider '{name}' is used by {used} deployment(s); remove them first")
    s.delete(row)
    bump_version(s)


def list_providers(s: Session, *, workspace_id: str) -> list[ProviderRow]:
    return list(
        s.scalars(
            select(ProviderRow)
            .where(ProviderRow.workspace_id == workspace_id)
            .order_by(ProviderRow.name)
        )
    )


def put_route(
    s: Session,
    *,
    workspace_id: str,
    body: RouteIn,
    resolvers: Mapping[str, RouteResolver] | None = None,
) -> RouteRow:
    """Create or replace a route with its deployments (or its target, checked by the
    resolver of its kind)."""
    target = None
    if body.target is not None:
        kind = str(body.target["kind"])
        resolver = (resolvers or {}).get(kind)
        if resolver is None:
            known = ", ".join(sorted(resolvers or {})) or "none"
            raise InvalidInput(f"target.kind: unknown kind '{kind}' (known: {known})")
        spec = {k: v for k, v in body.target.items() if k != "kind"}
        target = {"kind": kind, **resolver.check(s, workspace_id=workspace_id, spec=spec)}
    providers = {p.name: p for p in list_providers(s, workspace_id=workspace_id)}
    for i, d in enumerate(body.deployments):
        if d.provider not in providers:
            raise InvalidInput(f"deployments.{i}.provider: no provider named '{d.provider}'")
        if providers[d.provider].kind == "litellm" and (problem := model_problem(d.model)):
            raise InvalidInput(f"deployments.{i}.model: {problem}")
    for cls, targets in body.fallbacks.items():
        if body.name in targets:
            raise InvalidInput(f"fallbacks.{cls}: a route cannot fall back to itself")
    row = s.scalars(
        select(RouteRow).where(RouteRow.workspace_id == workspace_id, RouteRow.name == body.name)
    ).first()
    if row is None:
        row = RouteRow(id=new_id("rte"), workspace_id=workspace_id, name=body.name)
        s.add(row)
    row.kind, row.strategy, row.retries = body.kind, body.strategy, body.retries
    row.fallbacks = {k: list(v) for k, v in body.fallbacks.items()}
    row.cache_ttl, row.description = body.cache_ttl, body.description
    row.semantic_threshold = body.semantic_threshold
    row.semantic_embedding_route = body.semantic_embedding_route
    row.target = target
    s.flush()
    s.execute(delete(DeploymentRow).where(DeploymentRow.route_id == row.id))
    for d in body.deployments:
        s.add(
            DeploymentRow(
                id=new_id("dep"),
                route_id=row.id,
                provider_id=providers[d.provider].id,
                model=d.model,
                weight=d.weight,
                params=d.params,
                timeouts=d.timeouts.model_dump(),
            )
        )
    s.flush()
    bump_version(s)
    return row


def delete_route(s: Session, *, workspace_id: str, name: str) -> None:
    row = s.scalars(
        select(RouteRow).where(RouteRow.workspace_id == workspace_id, RouteRow.name == name)
    ).first()
    if row is None:
        raise NotFound(f"route '{name}' not found")
    s.delete(row)
    bump_version(s)


def set_price(s: Session, *, model: str, body: PriceIn) -> PriceRow:
    if not model or len(model) > 200:
        raise InvalidInput("model: 1 to 200 characters")
    row = s.get(PriceRow, model)
    if row is None:
        row = PriceRow(model=model, input=body.input, output=body.output)
        s.add(row)
    row.input, row.output, row.cached_input = body.input, body.output, body.cached_input
    row.updated_at = utcnow()
    s.flush()
    bump_version(s)
    return row


def scope_for(s: Session, *, workspace_id: str, kind: str, ref: str) -> str:
    if kind == "workspace":
        return f"workspace:{workspace_id}"
    if kind == "key":
        if not identity.key_in_workspace(s, workspace_id=workspace_id, key_id=ref):
            raise NotFound(f"key '{ref}' not found")
        return f"key:{ref}"
    if kind == "user":
        if not ref or len(ref) > 200:
            raise InvalidInput("user: 1 to 200 characters")
        return f"user:{workspace_id}:{ref}"
    raise NotFound(f"unknown limit scope '{kind}'; use key, user or workspace")


def set_limits(s: Session, *, workspace_id: str, scope: str, body: LimitsIn) -> LimitRow:
    row = s.get(LimitRow, scope)
    values = body.model_dump()
    if row is None:
        row = LimitRow(scope=scope, workspace_id=workspace_id, values=values)
        s.add(row)
    row.values = values
    row.updated_at = utcnow()
    s.flush()
    bump_version(s)
    return row


def delete_limits(s: Session, *, scope: str) -> None:
    row = s.get(LimitRow, scope)
    if row is None:
        raise NotFound(f"no limits set for {scope}")
    s.delete(row)
    bump_version(s)


def list_limits(s: Session, *, workspace_id: str) -> list[LimitRow]:
    return list(
        s.scalars(
            select(LimitRow).where(LimitRow.workspace_id == workspace_id).order_by(LimitRow.scope)
        )
    )
