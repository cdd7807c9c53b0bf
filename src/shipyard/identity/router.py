"""Identity API: thin routes over `identity.service`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from shipyard.errors import InvalidInput
from shipyard.http.deps import Authorized, Ctx
from shipyard.identity import service
from shipyard.identity.models import ApiKey, User, Workspace
from shipyard.identity.roles import Role
from shipyard.identity.schemas import (
    AccountPublic,
    AccountUpdate,
    KeyCreate,
    KeyCreated,
    KeyPublic,
    MemberUpdate,
    MePublic,
    UserCreate,
    UserPublic,
    WorkspaceCreate,
    WorkspacePublic,
)

router = APIRouter(prefix="/api", tags=["identity"])


def _ws(ws: Workspace, role: str, envs: list[str]) -> WorkspacePublic:
    return WorkspacePublic(
        id=ws.id,
        slug=ws.slug,
        name=ws.name,
        role=Role(role),
        environments=envs,
        created_at=ws.created_at,
    )


def _key(row: ApiKey) -> dict[str, object]:
    return {
        "id": row.id,
        "kid": row.kid,
        "name": row.name,
        "role": row.role,
        "platform_admin": row.platform_admin,
        "workspace_id": row.workspace_id,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/me", name="me.read")
def read_me(ctx: Ctx = Authorized("me:read")) -> MePublic:
    with ctx.tx() as tx:
        ws = service.get_workspace(tx.session, ref=ctx.workspace_id)
        envs = service.environments(tx.session, workspace_id=ws.id)
    a = ctx.actor
    return MePublic(
        kind=a.kind,
        id=a.id,
        label=a.label,
        role=a.role,
        platform_admin=a.platform_admin,
        workspace=_ws(ws, a.role, envs),
    )


@router.get("/workspaces", name="workspaces.list")
def list_workspaces(ctx: Ctx = Authorized("workspaces:read")) -> list[WorkspacePublic]:
    with ctx.tx() as tx:
        return [
            _ws(w, r, service.environments(tx.session, workspace_id=w.id))
            for w, r in service.workspaces_for(tx.session, actor=ctx.actor)
        ]


@router.post("/workspaces", status_code=201, name="workspaces.create")
def create_workspace(
    body: WorkspaceCreate, ctx: Ctx = Authorized("workspaces:manage")
) -> WorkspacePublic:
    with ctx.tx() as tx:
        ws = service.create_workspace(
            tx.session, slug=body.slug, name=body.name, owners_from=ctx.workspace_id
        )
        tx.target = f"workspace:{ws.slug}"
        envs = service.environments(tx.session, workspace_id=ws.id)
    return _ws(ws, Role.owner, envs)


@router.get("/users", name="users.list")
def list_users(ctx: Ctx = Authorized("users:read")) -> list[UserPublic]:
    with ctx.tx() as tx:
        rows = service.list_users(tx.session, workspace_id=ctx.workspace_id)
    return [_user(u, r) for u, r in rows]


def _user(u: User, role: str) -> UserPublic:
    return UserPublic(
        id=u.id,
        email=u.email,
        name=u.name,
        role=Role(role),
        is_active=u.is_active,
        platform_admin=u.is_platform_admin,
        created_at=u.created_at,
    )


@router.post("/users", status_code=201, name="users.create")
def create_user(body: UserCreate, ctx: Ctx = Authorized("users:manage")) -> UserPublic:
    if body.role is Role.app:
        raise InvalidInput("role: 'app' is for API keys, not users")
    with ctx.tx() as tx:
        user = service.create_user(
            tx.session,
            actor=ctx.actor,
            email=body.email,
            password=body.password,
            name=body.name,
            workspace_id=ctx.workspace_id,
            role=body.role,
            platform_admin=body.platform_admin,
        )
        tx.target = f"user:{user.email}"
        tx.detail = f"role={body.role.value} platform_admin={str(body.platform_admin).lower()}"
    return _user(user, body.role)


@router.patch("/users/{user_id}", name="users.update_account")
def update_account(
    user_id: str, body: AccountUpdate, ctx: Ctx = Authorized("platform:users")
) -> AccountPublic:
    """Instance-wide: grant or take back platform administration, deactivate or
    reactivate an account (in every workspace). `user_id` may be an e-mail."""
    with ctx.tx(target=f"user:{user_id}") as tx:
        user = service.update_account(
            tx.session,
            actor=ctx.actor,
            ref=user_id,
            platform_admin=body.platform_admin,
            is_active=body.is_active,
        )
        tx.target = f"user:{user.email}"
        tx.detail = " ".join(
            f"{k}={str(v).lower()}" for k, v in body.model_dump(exclude_none=True).items()
        )
    return AccountPublic(
        id=user.id,
        email=user.email,
        name=user.name,
        is_active=user.is_active,
        platform_admin=user.is_platform_admin,
        created_at=user.created_at,
    )


@router.put("/users/{user_id}/membership", name="members.update")
def update_membership(
    user_id: str, body: MemberUpdate, ctx: Ctx = Authorized("members:manage")
) -> dict[str, str]:
    with ctx.tx(target=f"user:{user_id}") as tx:
        service.set_membership(
            tx.session,
            actor=ctx.actor,
            user_id=user_id,
            workspace_id=ctx.workspace_id,
            role=body.role,
        )
        tx.detail = f"role={body.role.value}"
    return {"user_id": user_id, "role": body.role.value}


@router.delete("/users/{user_id}/membership", status_code=204, name="members.remove")
def remove_membership(user_id: str, ctx: Ctx = Authorized("members:manage")) -> Response:
    with ctx.tx(target=f"user:{user_id}") as tx:
        service.remove_membership(
            tx.session, actor=ctx.actor, user_id=user_id, workspace_id=ctx.workspace_id
        )
    return Response(status_code=204)


@router.get("/keys", name="keys.list")
def list_keys(include_revoked: bool = False, ctx: Ctx = Authorized("keys:read")) -> list[KeyPublic]:
    with ctx.tx() as tx:
        rows = service.list_keys(
            tx.session, workspace_id=ctx.workspace_id, include_revoked=include_revoked
        )
        return [KeyPublic.model_validate(_key(r)) for r in rows]


@router.post("/keys", status_code=201, name="keys.create")
def create_key(body: KeyCreate, ctx: Ctx = Authorized("keys:manage")) -> KeyCreated:
    with ctx.tx() as tx:
        row, full = service.create_key(
            tx.session,
            actor=ctx.actor,
            workspace_id=ctx.workspace_id,
            name=body.name,
            role=body.role,
            expires_at=body.expires_at,
            platform_admin=body.platform_admin,
        )
        tx.target = f"key:{row.id}"
        tx.detail = f"role={row.role} platform_admin={str(row.platform_admin).lower()}"
    return KeyCreated.model_validate({**_key(row), "key": full})


@router.delete("/keys/{key_id}", name="keys.revoke")
def revoke_key(key_id: str, ctx: Ctx = Authorized("keys:manage")) -> KeyPublic:
    with ctx.tx(target=f"key:{key_id}") as tx:
        row = service.revoke_key(
            tx.session, actor=ctx.actor, workspace_id=ctx.workspace_id, key_id=key_id
        )
    ctx.platform.keys.revoked(row.kid)
    return KeyPublic.model_validate(_key(row))
