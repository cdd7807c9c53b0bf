"""Who is making a request, as seen by every capability."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.identity.roles import Role, allows


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # "user" | "key"
    id: str
    label: str  # e-mail or key name; never a secret
    workspace_id: str
    role: Role
    csrf_token: str | None = None  # set for cookie sessions

    def can(self, permission: str) -> bool:
        return allows(self.role, permission)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.label}"
