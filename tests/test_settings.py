from pathlib import Path

import pytest

from shipyard.capability import migration_folders
from shipyard.errors import ConfigError
from shipyard.identity.bootstrap import bootstrap
from shipyard.settings import load_settings
from shipyard.store import Database


def test_defaults_and_derived_sqlite_url(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'shipyard.db').resolve()}"
    assert s.is_loopback


def test_yaml_file_then_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "shipyard.yaml"
    cfg.write_text("port: 9100\nallowed_hosts: [shipyard.internal]\n")
    assert load_settings(config_file=cfg, home=tmp_path).port == 9100
    monkeypatch.setenv("SHIPYARD_PORT", "9200")
    s = load_settings(config_file=cfg, home=tmp_path)
    assert s.port == 9200
    assert s.allowed_hosts == ["shipyard.internal"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("port: 99999\n", "port"),
        ("prot: 80\n", "prot: unknown setting"),
        ("database_url: mysql://x\n", "database_url"),
        ("- a list\n", "top level must be a mapping"),
        ("port: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    cfg = tmp_path / "shipyard.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg, home=tmp_path)
    assert names in info.value.detail


def test_postgres_url_gets_the_psycopg_driver(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, database_url="postgres://u@h/db")
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("weak", ["", "short", "password12345", "aaaaaaaaaaaaaaaa"])
def test_weak_admin_password_is_refused(tmp_path: Path, weak: str) -> None:
    s = load_settings(home=tmp_path, admin_password=weak or None)
    db = Database(s.sqlalchemy_url)
    db.upgrade(migration_folders())
    if not weak:  # empty means "generate one": that is allowed and printed once
        first = bootstrap(db, s)
        assert first is not None and first.password and len(first.password) >= 12
        return
    with pytest.raises(ConfigError) as info:
        bootstrap(db, s)
    assert "admin_password" in info.value.detail


def test_the_data_dir_and_database_are_private(tmp_path: Path) -> None:
    import stat

    from shipyard.app import create_app

    home = tmp_path / "data"
    home.mkdir(mode=0o755)
    create_app(load_settings(home=home, admin_password="a-Strong-passphrase-1"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "shipyard.db").stat().st_mode) == 0o600
