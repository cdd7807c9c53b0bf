"""Authentication and authorization for routes, as FastAPI dependencies.

Every route declares exactly one of:
- `Authorized("perm")`: who may call it; returns a `Ctx`;
- `Public()`: no credentials (health, readiness, login page, static assets).
`tests/http/test_route_permissions.py` fails for a route that declares neither."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from shipyard.audit.service import Entry, record
from shipyard.errors import PermissionDenied, Unauthenticated
from shipyard.http.problems import SAFE_METHODS
from shipyard.identity.actor import Actor
from shipyard.identity.roles import PLATFORM

if TYPE_CHECKING:
    from shipyard.platform import Platform

SESSION_COOKIE = "shipyard_session"
CSRF_HEADER = "x-csrf-token"


@dataclass
class Tx:
    session: Session
    target: str = ""
    detail: str = ""


@dataclass
class Ctx:
    """What a route handler gets: the caller, the platform, a transaction helper."""

    request: Request
    actor: Actor
    platform: Platform
    permission: str
    _audited: list[str] = field(default_factory=list)

    @property
    def workspace_id(self) -> str:
        return self.actor.workspace_id

    @contextmanager
    def tx(self, target: str = "") -> Iterator[Tx]:
        """One transaction for the request's change and its audit entry."""
        with self.platform.db.transaction() as s:
            t = Tx(session=s, target=target)
            yield t
            if self.request.method not in SAFE_METHODS:
                route = self.request.scope.get("route")
                record(
                    s,
                    Entry(
                        actor=self.actor.ref,
                        actor_kind=self.actor.kind,
                        action=getattr(route, "name", self.permission),
                        outcome="success",
                        status=200,
                        workspace_id=self.actor.workspace_id,
                        target=t.target,
                        client_addr=self.request.client.host if self.request.client else "",
                        detail=t.detail,
                    ),
                )
                self.request.state.audited = True


def resolve_actor(request: Request, platform: Platform) -> Actor:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <api key>'")
        return platform.keys.authenticate(token.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        actor = platform.sessions.authenticate(cookie)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER)
            if not sent or sent != actor.csrf_token:
                request.state.actor = actor
                raise PermissionDenied("missing or wrong CSRF token")
        return actor
    raise Unauthenticated("no credentials: send 'Authorization: Bearer <api key>'")


def Authorized(permission: str) -> Any:  # noqa: N802 - reads like a type in signatures
    def dependency(request: Request) -> Ctx:
        platform: Platform = request.app.state.platform
        actor = resolve_actor(request, platform)
        request.state.actor = actor
        if not actor.can(permission):
            raise PermissionDenied(_refusal(actor, permission))
        return Ctx(request=request, actor=actor, platform=platform, permission=permission)

    dependency.shipyard_permission = permission  # type: ignore[attr-defined]  # a marker the route sweep reads
    return Depends(dependency)


def _refusal(actor: Actor, permission: str) -> str:
    roles = actor.grants.get(permission, frozenset())
    if roles and roles <= PLATFORM:
        return f"'{permission}' needs a platform administrator"
    return f"the {actor.role.value} role does not grant '{permission}'"


def Public() -> Any:  # noqa: N802
    def dependency() -> None:
        return None

    dependency.shipyard_public = True  # type: ignore[attr-defined]  # a marker the route sweep reads
    return Depends(dependency)
