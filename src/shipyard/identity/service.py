"""Identity services. Keyword-only functions over a SQLAlchemy session; the caller owns
the transaction. They raise `shipyard.errors`, never HTTP exceptions."""

from __future__ import annotations

import functools
import re
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from shipyard.identity.actor import Actor
from shipyard.identity.credentials import (
    check_password_strength,
    hash_password,
    new_api_key,
    verify_password,
)
from shipyard.identity.models import (
    DEFAULT_ENVIRONMENTS,
    ApiKey,
    Environment,
    LoginSession,
    Membership,
    Organization,
    User,
    Workspace,
)
from shipyard.identity.roles import RANK, Role, can_grant
from shipyard.store import new_id, utcnow

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


@functools.cache
def _dummy_hash() -> str:
    """A real hash to verify against for unknown users (same cost as a known one);
    computed on the first login, not at import."""
    return hash_password("timing-equaliser-not-a-password")


# Organization and workspaces ---------------------------------------------------------


def ensure_organization(s: Session, *, name: str = "default") -> Organization:
    org = s.scalars(select(Organization)).first()
    if org is None:
        org = Organization(id=new_id("org"), name=name)
        s.add(org)
        s.flush()
    return org


def create_workspace(
    s: Session, *, slug: str, name: str | None = None, owners_from: str | None = None
) -> Workspace:
    """Create a workspace with the default environments. The owners of `owners_from`
    (the creator's workspace) become its owners, so no workspace is left orphaned."""
    if not SLUG.match(slug):
        raise InvalidInput("slug: use 1-63 lowercase letters, digits and dashes")
    if s.scalars(select(Workspace).where(Workspace.slug == slug)).first() is not None:
        raise Conflict(f"workspace '{slug}' already exists")
    org = ensure_organization(s)
    ws = Workspace(id=new_id("ws"), org_id=org.id, slug=slug, name=name or slug)
    s.add(ws)
    s.flush()
    for env in DEFAULT_ENVIRONMENTS:
        s.add(Environment(id=new_id("env"), workspace_id=ws.id, name=env))
    if owners_from is not None:
        owners = s.scalars(
            select(Membership.user_id).where(
                Membership.workspace_id == owners_from, Membership.role == Role.owner.value
            )
        )
        for user_id in list(owners):
            s.add(Membership(user_id=user_id, workspace_id=ws.id, role=Role.owner.value))
    s.flush()
    return ws


def get_workspace(s: Session, *, ref: str) -> Workspace:
    ws = s.get(Workspace, ref) or s.scalars(select(Workspace).where(Workspace.slug == ref)).first()
    if ws is None:
        raise NotFound(f"workspace '{ref}' not found")
    return ws


def workspaces_for(s: Session, *, actor: Actor) -> list[tuple[Workspace, str]]:
    """Workspaces visible to the actor with its role there (a key sees its own only)."""
    if actor.kind == "key":
        ws = s.get(Workspace, actor.workspace_id)
        return [(ws, actor.role.value)] if ws else []
    rows = s.execute(
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == actor.id)
        .order_by(Workspace.slug)
    ).all()
    return [(w, r) for w, r in rows]


def environments(s: Session, *, workspace_id: str) -> list[str]:
    """Environment names, the default promotion path first (dev, staging, production)."""
    names = s.scalars(select(Environment.name).where(Environment.workspace_id == workspace_id))
    order = {name: i for i, name in enumerate(DEFAULT_ENVIRONMENTS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


# Users and memberships ---------------------------------------------------------------


def create_user(
    s: Session,
    *,
    actor: Actor | None,
    email: str,
    password: str,
    name: str = "",
    workspace_id: str,
    role: Role,
    platform_admin: bool = False,
) -> User:
    """Create a user with a membership in `workspace_id`; `actor` None is the system
    (the first start)."""
    if platform_admin:
        _may_grant_platform(actor)
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise InvalidInput("email: not an e-mail address")
    check_password_strength(password)
    if s.scalars(select(User).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with e-mail '{email}' already exists")
    user = User(
        id=new_id("usr"),
        email=email,
        name=name,
        password_hash=hash_password(password),
        is_platform_admin=platform_admin,
    )
    s.add(user)
    s.flush()
    s.add(Membership(user_id=user.id, workspace_id=workspace_id, role=role.value))
    s.flush()
    return user


def get_user(s: Session, *, ref: str) -> User:
    """A user by id or e-mail."""
    user = s.get(User, ref) or s.scalars(select(User).where(User.email == ref.lower())).first()
    if user is None:
        raise NotFound(f"user '{ref}' not found")
    return user


def update_account(
    s: Session,
    *,
    actor: Actor,
    ref: str,
    platform_admin: bool | None = None,
    is_active: bool | None = None,
) -> User:
    """Instance-wide changes to an account (every workspace it belongs to sees them):
    the platform-admin flag, and deactivation. Platform administrators only; the
    instance keeps at least one active platform-admin user."""
    _may_grant_platform(actor)
    user = get_user(s, ref=ref)
    if (
        user.is_platform_admin
        and user.is_active
        and (platform_admin is False or is_active is False)
    ):
        others = s.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_platform_admin.is_(True), User.is_active.is_(True), User.id != user.id)
        )
        if not others:
            raise Conflict(
                f"'{user.email}' is the last active platform administrator: "
                "make another user one first",
                code="last_platform_admin",
            )
    if platform_admin is not None:
        user.is_platform_admin = platform_admin
    if is_active is not None:
        user.is_active = is_active
        if not is_active:
            s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    s.flush()
    return user


def _may_grant_platform(actor: Actor | None) -> None:
    """Only a platform administrator hands out (or takes back) the flag."""
    if actor is not None and not actor.platform_admin:
        raise PermissionDenied("only a platform administrator can grant platform administration")


def list_users(s: Session, *, workspace_id: str) -> list[tuple[User, str]]:
    rows = s.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(User.email)
    ).all()
    return [(u, r) for u, r in rows]


def set_membership(
    s: Session, *, actor: Actor, user_id: str, workspace_id: str, role: Role
) -> Membership:
    if not can_grant(actor.role, role):
        raise PermissionDenied(f"a {actor.role.value} cannot grant the {role.value} role")
    if role is Role.app:
        raise InvalidInput("role: 'app' is for API keys, not users")
    if s.get(User, user_id) is None:
        raise NotFound(f"user '{user_id}' not found")
    member = s.get(Membership, (user_id, workspace_id))
    if member is None:
        member = Membership(user_id=user_id, workspace_id=workspace_id, role=role.value)
        s.add(member)
    else:
        _may_change(actor, member, "change the role of")
        _keep_an_owner(s, member=member, new_role=role)
        member.role = role.value
    s.flush()
    return member


def remove_membership(s: Session, *, actor: Actor, user_id: str, workspace_id: str) -> None:
    member = s.get(Membership, (user_id, workspace_id))
    if member is None:
        raise NotFound(f"user '{user_id}' is not a member of this workspace")
    _may_change(actor, member, "remove")
    _keep_an_owner(s, member=member, new_role=None)
    s.delete(member)
    s.flush()


def _may_change(actor: Actor, member: Membership, verb: str) -> None:
    """Nobody changes or removes a member at or above their own rank (an admin cannot
    demote an owner or another admin), except themselves (stepping down) and platform
    administrators (the way back into a workspace whose owners are gone)."""
    if actor.platform_admin or (actor.kind == "user" and actor.id == member.user_id):
        return
    if RANK[Role(member.role)] >= RANK[actor.role]:
        raise PermissionDenied(
            f"a {actor.role.value} cannot {verb} a member who is {member.role}: "
            "only a higher role can"
        )


def _keep_an_owner(s: Session, *, member: Membership, new_role: Role | None) -> None:
    if member.role != Role.owner.value or new_role is Role.owner:
        return
    owners = s.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == member.workspace_id, Membership.role == Role.owner.value)
    )
    if (owners or 0) <= 1:
        raise Conflict(
            "this member is the workspace's last owner: make another member owner first",
            code="last_owner",
        )


def login(s: Session, *, email: str, password: str) -> tuple[User, str]:
    """Check credentials; return the user and the workspace to open the session in."""
    user = s.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        verify_password(_dummy_hash(), password)  # same cost for unknown and known users
        raise Unauthenticated("wrong e-mail or password")
    if not user.is_active or not verify_password(user.password_hash, password):
        raise Unauthenticated("wrong e-mail or password")
    first = s.scalars(
        select(Membership.workspace_id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at)
    ).first()
    if first is None:
        raise Unauthenticated("this user belongs to no workspace")
    return user, first


def role_in(s: Session, *, user_id: str, workspace_id: str) -> Role | None:
    member = s.get(Membership, (user_id, workspace_id))
    return Role(member.role) if member else None


# API keys ------------------------------------------------------------------------------


def create_key(
    s: Session,
    *,
    actor: Actor | None,
    workspace_id: str,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
    platform_admin: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; return the row and the full key, which is never retrievable again.
    `actor` None is the system (the first start)."""
    if actor is not None and not can_grant(actor.role, role):
        raise PermissionDenied(f"a {actor.role.value} cannot create a key with role {role.value}")
    if platform_admin:
        _may_grant_platform(actor)
    if not name.strip():
        raise InvalidInput("name: must not be empty")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at: must be in the future")
    full, kid, secret_hash = new_api_key()
    row = ApiKey(
        id=new_id("key"),
        kid=kid,
        secret_hash=secret_hash,
        name=name.strip(),
        workspace_id=workspace_id,
        role=role.value,
        platform_admin=platform_admin,
        created_by=actor.ref if actor else "bootstrap",
        expires_at=expires_at,
    )
    s.add(row)
    s.flush()
    return row, full


def list_keys(s: Session, *, workspace_id: str, include_revoked: bool = False) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.workspace_id == workspace_id)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    return list(s.scalars(q.order_by(ApiKey.created_at.desc())))


def revoke_key(s: Session, *, actor: Actor | None, workspace_id: str, key_id: str) -> ApiKey:
    """Revoke a key. A key ranks like the role it carries: nobody revokes one above their
    own role (an admin cannot revoke an owner's key) or, without the flag, a platform
    administrator's. The same rank may (an admin cleans up a leaked admin key)."""
    row = s.get(ApiKey, key_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"key '{key_id}' not found")
    if actor is not None and not actor.platform_admin:
        if row.platform_admin:
            raise PermissionDenied("only a platform administrator can revoke this key")
        if RANK[Role(row.role)] > RANK[actor.role]:
            raise PermissionDenied(f"a {actor.role.value} cannot revoke a key with role {row.role}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    s.flush()
    return row


def key_in_workspace(s: Session, *, workspace_id: str, key_id: str) -> bool:
    key = s.get(ApiKey, key_id)
    return key is not None and key.workspace_id == workspace_id
