"""Roles, and the role sets capabilities grant their permissions to (each capability
declares its permissions in its `capability.py`). Deny by default: a permission no
capability declares is granted to nobody."""

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

HUMAN = frozenset({Role.owner, Role.admin, Role.developer, Role.viewer})
ADMINS = frozenset({Role.owner, Role.admin})
OWNER = frozenset({Role.owner})
CALLERS = frozenset({Role.owner, Role.admin, Role.developer, Role.app})  # may call models

# Instance-wide powers (the price table, internal addresses, files on the server's disk,
# entries of no workspace) belong to no workspace role: a permission granted to
# `PLATFORM` is held only by platform administrators, a flag on users and keys that only
# a platform administrator hands out (the bootstrap admin is the first).
PLATFORM_ADMIN = "platform-admin"
PLATFORM: frozenset[str] = frozenset({PLATFORM_ADMIN})


def can_grant(granter: Role | str, role: Role | str) -> bool:
    """A principal may hand out its own role or a lesser one (admins may mint app keys)."""
    granter, role = Role(granter), Role(role)
    if granter not in ADMINS:
        return False
    return RANK[role] <= RANK[granter]
