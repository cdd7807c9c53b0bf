"""Request and response shapes of the identity API (Create / Update / Public families)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shipyard.identity.roles import Role
from shipyard.inputs import Strict, Timestamp


class WorkspaceCreate(Strict):
    slug: str = Field(min_length=1, max_length=63)
    name: str | None = Field(default=None, max_length=200)


class WorkspacePublic(BaseModel):
    id: str
    slug: str
    name: str
    role: Role
    environments: list[str]
    created_at: datetime


class MePublic(BaseModel):
    kind: str
    id: str
    label: str
    role: Role
    platform_admin: bool = False
    workspace: WorkspacePublic


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=256)
    name: str = Field(default="", max_length=200)
    role: Role = Role.developer
    platform_admin: bool = False  # only a platform administrator may set it


class AccountUpdate(Strict):
    """Instance-wide changes to a user account (platform administrators only)."""

    platform_admin: bool | None = None
    is_active: bool | None = None


class MemberUpdate(Strict):
    role: Role


class UserPublic(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    is_active: bool
    platform_admin: bool = False
    created_at: datetime


class AccountPublic(BaseModel):
    id: str
    email: str
    name: str
    is_active: bool
    platform_admin: bool
    created_at: datetime


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.app
    expires_at: Timestamp | None = Field(default=None, description="With a zone (Z, +02:00).")
    platform_admin: bool = False  # only a platform administrator may set it


class KeyPublic(BaseModel):
    id: str
    kid: str
    name: str
    role: Role
    platform_admin: bool = False
    workspace_id: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The full key. It is shown this once and never again.")
