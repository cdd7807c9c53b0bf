"""First start: create the organization, the default workspace, the admin user and an
admin key, both owners and platform administrators; save the key for the CLI in a 0600
file. Runs once, when no user exists."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import func, select

from shipyard.audit import service as audit
from shipyard.errors import ConfigError, InvalidInput
from shipyard.identity import service
from shipyard.identity.credentials import check_password_strength, generate_password
from shipyard.identity.models import User
from shipyard.identity.roles import Role
from shipyard.settings import Settings
from shipyard.store import Database


@dataclass(frozen=True)
class FirstStart:
    email: str
    password: str | None  # set only when Shipyard generated it
    api_key: str
    credentials_path: Path


def bootstrap(db: Database, settings: Settings) -> FirstStart | None:
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    if given is not None:
        try:
            check_password_strength(given)
        except InvalidInput as exc:
            raise ConfigError(f"admin_password: {exc.detail}") from None
    with db.transaction() as s:
        if (s.scalar(select(func.count()).select_from(User)) or 0) > 0:
            return None
        ws = service.create_workspace(s, slug="default", name="Default")
        password = given or generate_password()
        admin = service.create_user(
            s,
            actor=None,
            email=settings.admin_email,
            password=password,
            name="Administrator",
            workspace_id=ws.id,
            role=Role.owner,
            platform_admin=True,
        )
        row, key = service.create_key(
            s,
            actor=None,
            workspace_id=ws.id,
            name="admin (bootstrap)",
            role=Role.owner,
            platform_admin=True,
        )
        audit.record(
            s,
            audit.Entry(
                actor="bootstrap",
                actor_kind="system",
                action="platform.bootstrap",
                outcome="success",
                status=200,
                target=f"user:{admin.email},key:{row.id}",
                detail="role=owner platform_admin=true",
            ),
        )
    url = f"http://{settings.host}:{settings.port}"
    path = save_credentials(settings.credentials_path, url=url, api_key=key)
    return FirstStart(
        email=settings.admin_email,
        password=None if given else password,
        api_key=key,
        credentials_path=path,
    )


def save_credentials(path: Path, *, url: str, api_key: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"url": url, "api_key": api_key}, option=orjson.OPT_INDENT_2))
    os.chmod(path, 0o600)
    return path
