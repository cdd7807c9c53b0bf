"""Roles and the permissions they grant. Deny by default: a permission not listed
here is granted to nobody."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    developer = "developer"
    viewer = "viewer"
    app = "app"  # keys that only call the gateway and send traces/feedback


# Human roles form a ladder; `app` stands beside it.
RANK = {Role.viewer: 1, Role.developer: 2, Role.admin: 3, Role.owner: 4, Role.app: 0}

_HUMAN = {Role.owner, Role.admin, Role.developer, Role.viewer}
_ADMINS = {Role.owner, Role.admin}

PERMISSIONS: dict[str, frozenset[Role]] = {
    "me:read": frozenset(_HUMAN | {Role.app}),
    "ui:view": frozenset(_HUMAN),
    "metrics:read": frozenset(_ADMINS),  # spans every workspace's routes
    "api:schema": frozenset(_HUMAN),
    "workspaces:read": frozenset(_HUMAN),
    "workspaces:manage": frozenset({Role.owner}),
    "members:read": frozenset(_ADMINS),
    "members:manage": frozenset(_ADMINS),
    "users:read": frozenset(_ADMINS),
    "users:manage": frozenset({Role.owner}),
    "keys:read": frozenset(_ADMINS),
    "keys:manage": frozenset(_ADMINS),
    "audit:read": frozenset(_ADMINS),
    "gateway:call": frozenset({Role.owner, Role.admin, Role.developer, Role.app}),
    "gateway:read": frozenset(_HUMAN),
    "gateway:manage": frozenset(_ADMINS),
    "gateway:prices": frozenset({Role.owner}),  # prices are shared by every workspace
}


def allows(role: Role | str, permission: str) -> bool:
    return Role(role) in PERMISSIONS.get(permission, frozenset())


def can_grant(granter: Role | str, role: Role | str) -> bool:
    """A principal may hand out its own role or a lesser one (admins may mint app keys)."""
    granter, role = Role(granter), Role(role)
    if granter not in _ADMINS:
        return False
    return RANK[role] <= RANK[granter]
