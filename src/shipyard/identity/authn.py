"""Authentication: API keys (cached in memory, no database read per request once warm)
and login sessions (cookie)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from shipyard.errors import Unauthenticated
from shipyard.identity.actor import Actor, Grants
from shipyard.identity.credentials import same, sha256, split_api_key
from shipyard.identity.models import ApiKey, LoginSession, Membership, User
from shipyard.identity.roles import Role
from shipyard.store import Database, utcnow


@dataclass(frozen=True, slots=True)
class _CachedKey:
    secret_hash: str
    actor: Actor
    expires_at: datetime | None
    revoked: bool
    loaded: float


class KeyAuthenticator:
    """Verifies `sy-<kid>-<secret>` keys. Entries are cached for `ttl` seconds so the hot
    path reads no database; revocation through this replica takes effect at once, through
    another replica within `ttl`."""

    def __init__(self, db: Database, grants: Grants, ttl: float = 30.0) -> None:
        self._db = db
        self._grants = grants
        self._ttl = ttl
        self._cache: dict[str, _CachedKey] = {}
        self._missing: dict[str, float] = {}  # key ids that do not exist, and since when
        self._lock = threading.Lock()
        self.on_revoke: list[Callable[[str], None]] = []  # e.g. broadcast to other replicas

    def authenticate(self, presented: str) -> Actor:
        """Verify a key; may read the database (call from a thread on the event loop)."""
        actor = self.cached(presented)
        if actor is not None:
            return actor
        kid, secret = self._split(presented)
        missing_since = self._missing.get(kid)
        if missing_since is not None and time.monotonic() - missing_since < self._ttl:
            raise Unauthenticated("invalid API key")  # no database read for a known miss
        entry = self._load(kid)
        if entry is None:
            with self._lock:
                if len(self._missing) > 100_000:
                    self._missing.clear()
                self._missing[kid] = time.monotonic()
        return self._check(entry, secret)

    def cached(self, presented: str) -> Actor | None:
        """Verify from the cache only: the actor, None on a cache miss, or Unauthenticated."""
        kid, secret = self._split(presented)
        entry = self._cache.get(kid)
        if entry is None or time.monotonic() - entry.loaded > self._ttl:
            return None
        return self._check(entry, secret)

    @staticmethod
    def _split(presented: str) -> tuple[str, str]:
        parts = split_api_key(presented)
        if parts is None:
            raise Unauthenticated("malformed API key")
        return parts

    @staticmethod
    def _check(entry: _CachedKey | None, secret: str) -> Actor:
        if entry is None or not same(entry.secret_hash, sha256(secret)):
            raise Unauthenticated("invalid API key")
        if entry.revoked:
            raise Unauthenticated("API key has been revoked")
        if entry.expires_at is not None and entry.expires_at <= utcnow():
            raise Unauthenticated("API key has expired")
        return entry.actor

    def revoked(self, kid: str) -> None:
        """A key was revoked here: drop it now, and tell the other processes."""
        self.forget(kid)
        for hook in self.on_revoke:
            hook(kid)

    def forget(self, kid: str) -> None:
        with self._lock:
            self._cache.pop(kid, None)
            self._missing.pop(kid, None)

    def _load(self, kid: str) -> _CachedKey | None:
        with self._db.transaction() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.kid == kid)).first()
        if row is None:
            return None
        entry = _CachedKey(
            secret_hash=row.secret_hash,
            actor=Actor(
                kind="key",
                id=row.id,
                label=f"{row.name} ({row.kid})",
                workspace_id=row.workspace_id,
                role=Role(row.role),
                grants=self._grants,
                platform_admin=row.platform_admin,  # fixed at minting: safe to cache
            ),
            expires_at=row.expires_at,
            revoked=row.revoked_at is not None,
            loaded=time.monotonic(),
        )
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[kid] = entry
        return entry


class SessionAuthenticator:
    """Login sessions for the web UI: opaque cookie, stored hashed, with a CSRF token."""

    def __init__(self, db: Database, grants: Grants, ttl_hours: int) -> None:
        self._db = db
        self._grants = grants
        self._ttl = timedelta(hours=ttl_hours)

    def open(self, user: User, workspace_id: str) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        with self._db.transaction() as s:
            s.execute(delete(LoginSession).where(LoginSession.expires_at < utcnow()))
            s.add(
                LoginSession(
                    id=sha256(token),
                    user_id=user.id,
                    workspace_id=workspace_id,
                    csrf_token=csrf,
                    expires_at=utcnow() + self._ttl,
                )
            )
        return token, csrf

    def authenticate(self, token: str) -> Actor:
        with self._db.transaction() as s:
            row = s.get(LoginSession, sha256(token))
            if row is None or row.expires_at <= utcnow():
                raise Unauthenticated("session expired; log in again")
            user = s.get(User, row.user_id)
            member = s.get(Membership, (row.user_id, row.workspace_id))
            if user is None or not user.is_active or member is None:
                raise Unauthenticated("session is no longer valid")
            return Actor(
                kind="user",
                id=user.id,
                label=user.email,
                workspace_id=row.workspace_id,
                role=Role(member.role),
                csrf_token=row.csrf_token,
                grants=self._grants,
                platform_admin=user.is_platform_admin,  # read per request: revocable at once
            )

    def switch_workspace(self, token: str, workspace_id: str) -> None:
        with self._db.transaction() as s:
            row = s.get(LoginSession, sha256(token))
            if row is not None:
                row.workspace_id = workspace_id

    def close(self, token: str) -> None:
        with self._db.transaction() as s:
            s.execute(delete(LoginSession).where(LoginSession.id == sha256(token)))
