"""An actor kept with work that runs later (an evaluation run, an online rule, an
ingestion): stored as a reference (`actor_json`) and read back as it is then
(`still_valid`), so a revoked key or a removed member fails the work rather than acting
as them."""

from __future__ import annotations

from typing import Any

from shipyard.identity.actor import Actor
from shipyard.identity.models import ApiKey, Membership, User
from shipyard.identity.roles import Role
from shipyard.store import utcnow


def actor_json(actor: Actor) -> dict[str, Any]:
    return {"kind": actor.kind, "id": actor.id, "label": actor.label, "role": actor.role.value}


def still_valid(s: Any, who: dict[str, Any], workspace_id: str, grants: Any) -> Actor | str:
    """The actor that started a run (or made an online rule), as it is now: a revoked
    key or a removed member fails the work rather than calling as them; a string says
    why not."""
    kind, ident = who.get("kind"), who.get("id")
    if kind == "key":
        key = s.get(ApiKey, ident)
        if key is None or key.revoked_at is not None:
            return "the API key that started it was revoked"
        if key.expires_at is not None and key.expires_at <= utcnow():
            return "the API key that started it expired"
        return Actor(
            kind="key",
            id=key.id,
            label=f"{key.name} ({key.kid})",
            workspace_id=key.workspace_id,
            role=Role(key.role),
            grants=grants,
            platform_admin=key.platform_admin,
        )
    if kind == "user":
        user = s.get(User, ident)
        member = s.get(Membership, (ident, workspace_id))
        if user is None or not user.is_active or member is None:
            return "the user who started it is no longer a member"
        return Actor(
            kind="user",
            id=user.id,
            label=user.email,
            workspace_id=workspace_id,
            role=Role(member.role),
            grants=grants,
            platform_admin=user.is_platform_admin,
        )
    return "it names no actor"
