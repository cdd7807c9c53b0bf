"""Store contract: the same tests on SQLite and on PostgreSQL."""

import os
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from shipyard.audit.models import AuditEvent
from shipyard.audit.service import Entry, record
from shipyard.capability import migration_folders
from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shipyard.identity import service
from shipyard.identity.actor import Actor
from shipyard.identity.bootstrap import bootstrap
from shipyard.identity.credentials import sha256
from shipyard.identity.models import ApiKey, User
from shipyard.identity.roles import Role
from shipyard.settings import Settings
from shipyard.store import Database


@pytest.fixture
def db(settings: Settings) -> Database:
    settings.home.mkdir(parents=True, exist_ok=True)
    database = Database(settings.sqlalchemy_url)
    database.upgrade(migration_folders())
    yield database
    database.close()


def test_migrations_are_idempotent(db: Database) -> None:
    db.upgrade(migration_folders())
    newest = max(p.name[:4] for f in migration_folders() for p in f.glob("[0-9]*.py"))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newest


def test_an_instance_started_before_platform_admins_keeps_its_admin(settings: Settings) -> None:
    """Upgrading to 0004 makes the first start's admin and key platform administrators,
    and nobody else."""
    from alembic import command
    from alembic.config import Config

    from shipyard.store.db import MIGRATIONS

    settings.home.mkdir(parents=True, exist_ok=True)
    old = Database(settings.sqlalchemy_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(map(str, migration_folders())))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with old.engine.begin() as conn:  # what a first start and one more user left behind
        conn.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES ('org_1', 'o', :t);"),
            {"t": "2026-01-01 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO workspaces (id, org_id, slug, name, created_at) "
                "VALUES ('ws_1', 'org_1', 'default', 'Default', :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
        for uid, at in (("usr_first", "2026-01-01 00:00:01"), ("usr_later", "2026-01-02 00:00:00")):
            conn.execute(
                text(
                    "INSERT INTO users (id, email, name, password_hash, is_active, created_at) "
                    "VALUES (:id, :email, '', 'x', true, :t)"
                ),
                {"id": uid, "email": f"{uid}@example.com", "t": at},
            )
        for kid, by in (("boot", "bootstrap"), ("later", "user:usr_first@example.com")):
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, kid, secret_hash, name, workspace_id, role, "
                    "created_by, created_at) VALUES (:id, :kid, 'h', 'k', 'ws_1', 'owner', :by, :t)"
                ),
                {"id": f"key_{kid}", "kid": kid, "by": by, "t": "2026-01-01 00:00:02"},
            )
    old.close()
    db = Database(settings.sqlalchemy_url)
    db.upgrade(migration_folders())
    with db.transaction() as s:
        users = {u.id: u.is_platform_admin for u in s.scalars(select(User))}
        keys = {k.id: k.platform_admin for k in s.scalars(select(ApiKey))}
    db.close()
    assert users == {"usr_first": True, "usr_later": False}
    assert keys == {"key_boot": True, "key_later": False}


def test_bootstrap_runs_once_and_saves_a_private_credential(
    db: Database, settings: Settings
) -> None:
    first = bootstrap(db, settings)
    assert first is not None and first.password is None  # the given password is not echoed
    assert first.credentials_path.stat().st_mode & 0o777 == 0o600
    assert first.api_key in first.credentials_path.read_text()
    assert bootstrap(db, settings) is None
    with db.transaction() as s:
        admin = s.scalars(select(User)).one()
        assert admin.password_hash.startswith("$argon2") and admin.is_platform_admin
        assert [k.platform_admin for k in s.scalars(select(ApiKey))] == [True]
        ws = service.get_workspace(s, ref="default")
        assert service.environments(s, workspace_id=ws.id) == ["dev", "staging", "production"]


def test_workspace_slugs_are_unique_and_validated(db: Database) -> None:
    with db.transaction() as s:
        service.create_workspace(s, slug="search-team")
    with pytest.raises(Conflict), db.transaction() as s:
        service.create_workspace(s, slug="search-team")
    with pytest.raises(InvalidInput), db.transaction() as s:
        service.create_workspace(s, slug="Bad Slug!")


def test_keys_are_stored_hashed_and_revocable(db: Database) -> None:
    with db.transaction() as s:
        ws = service.create_workspace(s, slug="w")
        row, full = service.create_key(s, actor=None, workspace_id=ws.id, name="k", role=Role.app)
    secret = full.split("-", 2)[2]
    with db.transaction() as s:
        stored = s.get(ApiKey, row.id)
        assert stored.secret_hash == sha256(secret)
        assert secret not in repr(stored.__dict__)
        assert [k.id for k in service.list_keys(s, workspace_id=ws.id)] == [row.id]
        service.revoke_key(s, actor=None, workspace_id=ws.id, key_id=row.id)
    with db.transaction() as s:
        assert service.list_keys(s, workspace_id=ws.id) == []
        assert len(service.list_keys(s, workspace_id=ws.id, include_revoked=True)) == 1
        with pytest.raises(NotFound):
            service.revoke_key(s, actor=None, workspace_id="ws_other", key_id=row.id)


def test_roles_cannot_be_escalated(db: Database) -> None:
    with db.transaction() as s:
        ws = service.create_workspace(s, slug="w")
    admin = Actor(kind="key", id="k", label="a", workspace_id=ws.id, role=Role.admin)
    dev = Actor(kind="key", id="k", label="d", workspace_id=ws.id, role=Role.developer)
    with db.transaction() as s:
        service.create_key(s, actor=admin, workspace_id=ws.id, name="ok", role=Role.app)
        with pytest.raises(PermissionDenied):
            service.create_key(s, actor=admin, workspace_id=ws.id, name="no", role=Role.owner)
        with pytest.raises(PermissionDenied):
            service.create_key(s, actor=dev, workspace_id=ws.id, name="no", role=Role.app)


def test_a_workspace_keeps_one_owner(db: Database) -> None:
    with db.transaction() as s:
        ws = service.create_workspace(s, slug="w")
        user = service.create_user(
            s,
            actor=None,
            email="o@example.com",
            password="Sturdy-Passphrase-42",
            workspace_id=ws.id,
            role=Role.owner,
        )
    owner = Actor(kind="user", id=user.id, label="o", workspace_id=ws.id, role=Role.owner)
    with pytest.raises(Conflict), db.transaction() as s:
        service.set_membership(
            s, actor=owner, user_id=user.id, workspace_id=ws.id, role=Role.viewer
        )
    with pytest.raises(Conflict), db.transaction() as s:
        service.remove_membership(s, actor=owner, user_id=user.id, workspace_id=ws.id)


def test_login_checks_the_password(db: Database) -> None:
    from shipyard.errors import Unauthenticated

    with db.transaction() as s:
        ws = service.create_workspace(s, slug="w")
        service.create_user(
            s,
            actor=None,
            email="Dev@Example.com",
            password="Sturdy-Passphrase-42",
            workspace_id=ws.id,
            role=Role.developer,
        )
    with db.transaction() as s:
        user, ws_id = service.login(s, email="dev@example.com", password="Sturdy-Passphrase-42")
        assert ws_id == ws.id and user.email == "dev@example.com"
        for email, pw in [("dev@example.com", "wrong"), ("nobody@example.com", "x")]:
            with pytest.raises(Unauthenticated):
                service.login(s, email=email, password=pw)


def test_the_audit_log_is_append_only(db: Database) -> None:
    with db.transaction() as s:
        record(s, Entry(actor="a", actor_kind="user", action="x", outcome="success", status=200))
    for statement in ("UPDATE audit_events SET actor = 'b'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError), db.transaction() as s:
            s.execute(text(statement))
    with db.transaction() as s:
        assert s.scalars(select(AuditEvent.actor)).all() == ["a"]


def test_a_failed_unit_of_work_leaves_nothing(db: Database) -> None:
    with pytest.raises(InvalidInput), db.transaction() as s:
        ws = service.create_workspace(s, slug="half")
        service.create_user(
            s,
            actor=None,
            email="x@example.com",
            password="weak",
            workspace_id=ws.id,
            role=Role.viewer,
        )
    with db.transaction() as s, pytest.raises(NotFound):
        service.get_workspace(s, ref="half")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.close()
