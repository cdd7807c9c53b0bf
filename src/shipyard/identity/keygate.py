"""`KeyGate`: API-key authentication and one permission check for the pure ASGI faces
(the gateway's `/v1`, tracing's `/v1/traces`), which run before FastAPI and its
dependencies. The key comes from `Authorization: Bearer <key>` or `x-api-key` (the
Anthropic SDK's header), is looked up in the in-memory key cache (a thread only on a
miss), and every refusal is counted and audited per source and minute (`DenialLog`:
anyone can send these without credentials, so there is no write per request)."""

from __future__ import annotations

import asyncio

from starlette.types import Scope

from shipyard.audit.denials import DenialLog
from shipyard.errors import PermissionDenied, Unauthenticated
from shipyard.identity.actor import Actor
from shipyard.identity.authn import KeyAuthenticator


class KeyGate:
    def __init__(self, keys: KeyAuthenticator, denials: DenialLog, *, face: str) -> None:
        self.keys = keys
        self.denials = denials
        self.face = face  # "gateway", "traces": the denials' metric label

    async def admit(
        self, scope: Scope, headers: dict[bytes, bytes], permission: str, doing: str
    ) -> Actor:
        """The key's actor, holding `permission`; else Unauthenticated (401) or
        PermissionDenied (403: "the <role> role cannot <doing>")."""
        actor = await self.authenticate(scope, headers)
        if not actor.can(permission):
            self.denied(scope, actor, 403, "role", f"role lacks {permission}")
            raise PermissionDenied(
                f"the {actor.role.value} role cannot {doing}", code="permission_denied"
            )
        return actor

    async def authenticate(self, scope: Scope, headers: dict[bytes, bytes]) -> Actor:
        token = bearer_token(headers)
        if not token:
            detail = "no API key: send 'Authorization: Bearer <key>'"
            self.denied(scope, None, 401, "missing_key", detail)
            raise Unauthenticated(detail)
        try:
            actor = self.keys.cached(token)
            if actor is None:
                actor = await asyncio.to_thread(self.keys.authenticate, token)
            return actor
        except Unauthenticated as exc:
            self.denied(scope, None, 401, "invalid_key", exc.detail)
            raise

    def denied(
        self, scope: Scope, actor: Actor | None, status: int, reason: str, detail: str
    ) -> None:
        """Counted and audited aggregated (per source and minute): no write here."""
        client = scope.get("client")
        self.denials.note(
            face=self.face,
            reason=reason,
            status=status,
            source=client[0] if client else "",
            actor=actor,
            target=f"{scope['method']} {scope['path']}",
            detail=detail,
        )


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    """The API key of `Authorization: Bearer <key>`, else of `x-api-key: <key>`."""
    raw = headers.get(b"authorization")
    if raw is not None:
        scheme, _, value = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1").strip() or None
    return None
