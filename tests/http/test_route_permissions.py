"""Every route of the app declares who may call it, and the app enforces it:
401 without credentials and 403 for each role that the route's permission excludes.
A route that declares no permission (nor `Public()`) fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount
from starlette.testclient import TestClient

from shipyard.identity.roles import PLATFORM, Role
from tests.conftest import as_key, key_for

PUBLIC = {"/healthz", "/readyz", "/login", "/static"}


def _markers(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _markers(dep)


def declared(route: APIRoute) -> tuple[str, str | None]:
    for call in _markers(route.dependant):
        if getattr(call, "shipyard_public", False):
            return "public", None
        perm = getattr(call, "shipyard_permission", None)
        if perm:
            return "permission", perm
    return "undeclared", None


def _flatten(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        nested = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps routers
        if nested is not None:
            yield from _flatten(nested.routes)
        else:
            yield route


def endpoints(app: Any) -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in _flatten(app.routes):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                out.append((method, route.path, route))
        elif isinstance(route, Mount):
            assert route.path in PUBLIC, f"mounted app {route.path} is not on the public allowlist"
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_declares_a_known_permission_or_is_public(sqlite_client: TestClient) -> None:
    seen_public = set()
    grants = sqlite_client.app.state.platform.grants  # type: ignore[attr-defined]
    for method, path, route in endpoints(sqlite_client.app):
        kind, perm = declared(route)
        assert kind != "undeclared", f"{method} {path} declares no permission"
        if kind == "public":
            assert path in PUBLIC, f"{method} {path} is public but not on the allowlist"
            seen_public.add(path)
        else:
            assert perm in grants, f"{method} {path} uses unknown permission {perm!r}"
    assert seen_public == PUBLIC - {"/static"}


def test_no_credentials_means_401(sqlite_client: TestClient) -> None:
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    checked = 0
    for method, path, route in endpoints(sqlite_client.app):
        if declared(route)[0] == "public":
            continue
        r = anonymous.request(method, concrete(path), json={} if method != "GET" else None)
        assert r.status_code == 401, f"{method} {path} answered {r.status_code} without credentials"
        assert r.headers["content-type"] == "application/problem+json"
        checked += 1
    assert checked >= 15


def test_roles_below_the_requirement_get_403(sqlite_client: TestClient) -> None:
    keys = {role: key_for(sqlite_client, role.value) for role in Role if role is not Role.owner}
    grants = sqlite_client.app.state.platform.grants  # type: ignore[attr-defined]
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    denied = 0
    for method, path, route in endpoints(sqlite_client.app):
        kind, perm = declared(route)
        if kind == "public":
            continue
        for role, key in keys.items():
            if role in grants[perm]:
                continue
            r = anonymous.request(
                method, concrete(path), headers=as_key(key), json={} if method != "GET" else None
            )
            assert r.status_code == 403, f"{role.value} on {method} {path}: {r.status_code}"
            assert perm in r.json()["detail"]
            denied += 1
    assert denied >= 30


def test_platform_routes_refuse_every_workspace_role(sqlite_client: TestClient) -> None:
    """A permission granted to PLATFORM is held by no workspace role, owner included:
    only the platform-admin flag opens it."""
    keys = {role: key_for(sqlite_client, role.value) for role in Role}  # none has the flag
    grants = sqlite_client.app.state.platform.grants  # type: ignore[attr-defined]
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    checked = set()
    for method, path, route in endpoints(sqlite_client.app):
        kind, perm = declared(route)
        if kind == "public" or not grants[perm] <= PLATFORM:
            continue
        for role, key in keys.items():
            r = anonymous.request(
                method, concrete(path), headers=as_key(key), json={} if method != "GET" else None
            )
            assert r.status_code == 403, f"{role.value} on {method} {path}: {r.status_code}"
            assert perm in r.json()["detail"] and "platform administrator" in r.json()["detail"]
        checked.add(route.name)
    assert {"workspaces.create", "users.update_account"} <= checked


def test_browsers_are_sent_to_the_login_page(sqlite_client: TestClient) -> None:
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost", follow_redirects=False)
    for path in ("/", "/admin/keys", "/admin/users", "/admin/audit"):
        r = anonymous.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/login", "/static/htmx.min.js"])
def test_public_routes_answer_without_credentials(sqlite_client: TestClient, path: str) -> None:
    anonymous = TestClient(sqlite_client.app, base_url="http://localhost")
    assert anonymous.get(path).status_code == 200
