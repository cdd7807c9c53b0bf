"""Who is making a request, as seen by every capability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shipyard.identity.roles import PLATFORM_ADMIN, Role

Grants = Mapping[str, frozenset[str]]  # permission -> roles (and PLATFORM_ADMIN)


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # "user" | "key"
    id: str
    label: str  # e-mail or key name; never a secret
    workspace_id: str
    role: Role
    csrf_token: str | None = None  # set for cookie sessions
    # permission -> roles that hold it, assembled from every capability's declaration;
    # a permission not in it is held by nobody (deny by default)
    grants: Grants = field(default_factory=dict, repr=False, compare=False)
    platform_admin: bool = False  # holds the instance-wide permissions (roles.PLATFORM)

    def can(self, permission: str) -> bool:
        roles = self.grants.get(permission, ())
        return self.role in roles or (self.platform_admin and PLATFORM_ADMIN in roles)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.label}"
