"""Web UI routes. Thin like the API's: authorize, call a service, render."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from shipyard.audit import service as audit
from shipyard.audit.service import Entry, record_now, record_refusal, refusal
from shipyard.errors import InvalidInput, PermissionDenied, ShipyardError, Unauthenticated
from shipyard.http import csrf
from shipyard.http.deps import SESSION_COOKIE, Authorized, Ctx, Public
from shipyard.identity import service
from shipyard.identity.roles import Role
from shipyard.store import utcnow

if TYPE_CHECKING:
    from shipyard.platform import Platform

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


def render(ctx: Ctx, name: str, page: str, status: int = 200, **values: Any) -> Response:
    with ctx.platform.db.transaction() as s:
        workspaces = service.workspaces_for(s, actor=ctx.actor)
    return templates.TemplateResponse(
        ctx.request,
        name,
        {"actor": ctx.actor, "workspaces": workspaces, "page": page, **values},
        status_code=status,
    )


def _fragment(ctx: Ctx, name: str, **values: Any) -> Response:
    return templates.TemplateResponse(ctx.request, name, {"actor": ctx.actor, **values})


# Login -------------------------------------------------------------------------------


@router.get("/login", name="ui.login_page")
def login_page(request: Request, _: None = Public()) -> Response:
    return _login_form(request)


def _login_form(
    request: Request,
    error: str | None = None,
    email: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The login page; its form carries the login CSRF token, set as a cookie too."""
    token = csrf.login_token(request)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"error": error, "email": email, "csrf_token": token},
        status_code=status,
        headers=headers,
    )
    secure = request.app.state.platform.settings.secure_cookies
    csrf.set_login_cookie(response, token, secure=secure)
    return response


@router.post("/login", name="ui.login")
async def login(
    request: Request,
    email: str = Form(max_length=320),
    password: str = Form(max_length=256),
    csrf_token: str = Form(default="", max_length=128),
    _: None = Public(),
) -> Response:
    """Cheap refusals first (forged form, throttled client, too many checks running);
    the password check (argon2) runs in a thread, at most `login_hash_concurrency` at
    once."""
    platform = request.app.state.platform
    refusals = platform.metrics.login_refusals
    client = request.client.host if request.client else ""
    forged = csrf.login_problem(request, csrf_token)
    if forged is not None:
        refusals.labels("csrf").inc()
        return _login_form(request, forged, email, status=403)
    wait = platform.login_throttle.blocked_for(client, email)
    if wait:
        refusals.labels("throttled").inc()
        retry = str(math.ceil(wait))
        message = f"too many failed attempts; try again in {retry} s"
        return _login_form(request, message, email, 429, {"Retry-After": retry})
    if not platform.login_gate.try_enter():
        refusals.labels("busy").inc()
        message = "too many logins at once; try again in a second"
        return _login_form(request, message, email, 503, {"Retry-After": "1"})
    try:
        token = await run_in_threadpool(_check_login, platform, client, email, password)
    except Unauthenticated as exc:
        return _login_form(request, exc.detail, email, status=401)
    finally:
        platform.login_gate.leave()
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=platform.settings.secure_cookies,
        max_age=platform.settings.session_ttl_hours * 3600,
    )
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/login")
    return response


def _check_login(platform: Platform, client: str, email: str, password: str) -> str:
    """Check the password (one argon2 hash), open a session, audit; the session token."""
    try:
        with platform.db.transaction() as s:
            user, workspace_id = service.login(s, email=email, password=password)
    except Unauthenticated as exc:
        platform.login_throttle.failed(client, email)
        entry = refusal(actor=None, action="ui.login", status=401, client_addr=client)
        entry.actor, entry.detail = f"login:{email.strip().lower()[:100]}", exc.detail
        record_refusal(platform.db, entry)
        raise
    platform.login_throttle.succeeded(client, email)
    token, _csrf = platform.sessions.open(user, workspace_id)
    record_now(
        platform.db,
        Entry(
            actor=f"user:{user.email}",
            actor_kind="user",
            action="ui.login",
            outcome="success",
            status=200,
            workspace_id=workspace_id,
            client_addr=client,
        ),
    )
    return token


@router.post("/logout", name="ui.logout")
def logout(ctx: Ctx = Authorized("ui:view")) -> Response:
    token = ctx.request.cookies.get(SESSION_COOKIE)
    with ctx.tx(target=f"user:{ctx.actor.label}"):
        pass
    if token:
        ctx.platform.sessions.close(token)
    response = Response(status_code=204, headers={"HX-Redirect": "/login"})
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/workspace", name="ui.switch_workspace")
def switch_workspace(
    workspace: str = Form(max_length=64), ctx: Ctx = Authorized("ui:view")
) -> Response:
    with ctx.tx(target=f"workspace:{workspace}") as tx:
        ws = service.get_workspace(tx.session, ref=workspace)
        if (
            ctx.actor.kind != "user"
            or service.role_in(tx.session, user_id=ctx.actor.id, workspace_id=ws.id) is None
        ):
            raise PermissionDenied("you are not a member of that workspace")
    token = ctx.request.cookies.get(SESSION_COOKIE, "")
    ctx.platform.sessions.switch_workspace(token, ws.id)
    return Response(status_code=204, headers={"HX-Redirect": "/"})


# Pages -------------------------------------------------------------------------------


@router.get("/", name="ui.home")
def home(ctx: Ctx = Authorized("ui:view")) -> Response:
    with ctx.platform.db.transaction() as s:
        ws = service.get_workspace(s, ref=ctx.workspace_id)
        envs = service.environments(s, workspace_id=ws.id)
    base_url = str(ctx.request.base_url).rstrip("/")
    return render(ctx, "home.html", "home", workspace=ws, environments=envs, base_url=base_url)


@router.get("/admin/users", name="ui.users")
def users_page(ctx: Ctx = Authorized("users:read")) -> Response:
    with ctx.platform.db.transaction() as s:
        users = service.list_users(s, workspace_id=ctx.workspace_id)
    return render(ctx, "users.html", "users", users=users, error=None)


@router.post("/admin/users", name="ui.users_create")
def users_create(
    email: str = Form(max_length=320),
    password: str = Form(max_length=256),
    name: str = Form(default="", max_length=200),
    role: Role = Form(default=Role.developer),
    ctx: Ctx = Authorized("users:manage"),
) -> Response:
    error = None
    try:
        if role is Role.app:
            raise InvalidInput("role: 'app' is for API keys, not users")
        with ctx.tx() as tx:
            user = service.create_user(
                tx.session,
                actor=ctx.actor,
                email=email,
                password=password,
                name=name,
                workspace_id=ctx.workspace_id,
                role=role,
            )
            tx.target = f"user:{user.email}"
    except ShipyardError as exc:
        error = exc.detail
        _audit_ui_failure(ctx, exc)
    with ctx.platform.db.transaction() as s:
        users = service.list_users(s, workspace_id=ctx.workspace_id)
    return _fragment(ctx, "users_table.html", users=users, error=error)


@router.get("/admin/keys", name="ui.keys")
def keys_page(ctx: Ctx = Authorized("keys:read")) -> Response:
    with ctx.platform.db.transaction() as s:
        keys = service.list_keys(s, workspace_id=ctx.workspace_id, include_revoked=True)
    return render(ctx, "keys.html", "keys", keys=keys, error=None, created=None)


@router.post("/admin/keys", name="ui.keys_create")
def keys_create(
    name: str = Form(max_length=200),
    role: Role = Form(default=Role.app),
    expires_in_days: str = Form(default="", max_length=5),
    ctx: Ctx = Authorized("keys:manage"),
) -> Response:
    error, created, full = None, None, None
    try:
        expires = None
        if expires_in_days.strip():
            if not expires_in_days.strip().isdigit() or not 1 <= int(expires_in_days) <= 3650:
                raise InvalidInput("expires: a number of days between 1 and 3650")
            expires = utcnow() + timedelta(days=int(expires_in_days))
        with ctx.tx() as tx:
            created, full = service.create_key(
                tx.session,
                actor=ctx.actor,
                workspace_id=ctx.workspace_id,
                name=name,
                role=role,
                expires_at=expires,
            )
            tx.target = f"key:{created.id}"
            tx.detail = f"role={created.role}"
    except ShipyardError as exc:
        error = exc.detail
        _audit_ui_failure(ctx, exc)
    return _keys_fragment(ctx, error=error, created=created, created_key=full)


@router.post("/admin/keys/{key_id}/revoke", name="ui.keys_revoke")
def keys_revoke(key_id: str, ctx: Ctx = Authorized("keys:manage")) -> Response:
    error = None
    try:
        with ctx.tx(target=f"key:{key_id}") as tx:
            row = service.revoke_key(
                tx.session, actor=ctx.actor, workspace_id=ctx.workspace_id, key_id=key_id
            )
        ctx.platform.keys.revoked(row.kid)
    except ShipyardError as exc:
        error = exc.detail
        _audit_ui_failure(ctx, exc)
    return _keys_fragment(ctx, error=error, created=None, created_key=None)


def _keys_fragment(ctx: Ctx, **values: Any) -> Response:
    with ctx.platform.db.transaction() as s:
        keys = service.list_keys(s, workspace_id=ctx.workspace_id, include_revoked=True)
    return _fragment(ctx, "keys_table.html", keys=keys, **values)


@router.get("/admin/audit", name="ui.audit")
async def audit_page(
    actor: str = "", action: str = "", outcome: str = "", ctx: Ctx = Authorized("audit:read")
) -> Response:
    q = audit.AuditQuery(
        workspace_id=ctx.workspace_id,
        actor=actor[:200] or None,
        action=action[:100] or None,
        outcome=outcome if outcome in ("success", "denied", "failed") else None,
        limit=200,
        include_unscoped=ctx.actor.can("audit:unscoped"),
    )

    def load() -> list[Any]:
        with ctx.platform.db.transaction() as s:
            return audit.search(s, q)

    events = await run_in_threadpool(load)
    export_query = urlencode(
        {k: v for k, v in (("actor", q.actor), ("action", q.action), ("outcome", q.outcome)) if v}
    )
    return await run_in_threadpool(
        render, ctx, "audit.html", "audit", events=events, q=q, export_query=export_query
    )


def _audit_ui_failure(ctx: Ctx, exc: ShipyardError) -> None:
    ctx.request.state.audited = True
    entry = refusal(
        actor=ctx.actor,
        action=getattr(ctx.request.scope.get("route"), "name", "ui"),
        status=exc.status,
        client_addr=ctx.request.client.host if ctx.request.client else "",
        detail=exc.detail,
    )
    entry.outcome = "failed"  # a UI form that failed, even on a permission check
    record_refusal(ctx.platform.db, entry)
