"""Settings: defaults < shipyard.yaml < SHIPYARD_* environment < explicit overrides.

Nothing here is read at import time; `load_settings()` builds a `Settings` and
raises `ConfigError` naming the offending key when something is wrong.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shipyard.errors import ConfigError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="forbid", frozen=True)

    home: Path = Field(default=Path(".shipyard"), description="Data directory.")
    host: str = Field(default="127.0.0.1", description="Address `shipyard up` binds to.")
    port: int = Field(default=8000, ge=1, le=65535)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite under the data dir."
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host header values accepted (DNS-rebinding protection); '*' allows any.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or CIDRs) whose X-Forwarded-For is believed.",
    )
    login_hash_concurrency: int = Field(
        default=2, ge=1, le=64, description="Password checks (64 MiB each) run at once."
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    session_ttl_hours: int = Field(default=12, ge=1, le=24 * 30)
    secure_cookies: bool = Field(default=False, description="Mark cookies Secure (behind TLS).")
    admin_email: str = Field(default="admin@shipyard.local")
    admin_password: SecretStr | None = Field(
        default=None, description="First admin's password; generated and printed when unset."
    )
    key_cache_ttl_seconds: float = Field(default=30.0, ge=0)
    secret_key: SecretStr | None = Field(
        default=None, description="Encrypts provider credentials; default: a 0600 key file."
    )
    redis_url: str | None = Field(
        default=None, description="Redis for limits, budgets and cache across replicas."
    )
    local_threads: int | None = Field(
        default=None, ge=1, le=256, description="llama.cpp threads (default: the core count)."
    )
    local_replicas: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes of the built-in chat model (each with local_threads "
        "threads): as many streams generate at once.",
    )
    local_engine: Literal["python", "server"] = Field(
        default="python",
        description="What runs local GGUF models (the built-in one and fine-tunes made from "
        "it): 'python' (llama-cpp-python in worker processes) or 'server' (llama.cpp's "
        "llama-server, continuous batching over local_slots sequences per replica).",
    )
    local_slots: int = Field(
        default=4, ge=1, le=64, description="Sequences one llama-server batches at once."
    )
    llama_server: str = Field(
        default="",
        description="Path of the llama-server binary; empty: the one scripts/setup.sh "
        "built into the environment, else one on PATH.",
    )
    gateway_retry_base_seconds: float = Field(default=0.25, ge=0, le=30)
    gateway_cooldown_failures: int = Field(default=3, ge=1, le=1000)
    gateway_cooldown_seconds: float = Field(default=30.0, ge=0, le=86400)
    gateway_probe_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="How often cooling deployments are probed."
    )
    gateway_ledger_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How often budget counters are re-seeded from the spend ledger.",
    )
    gateway_records_fsync_seconds: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="fsync the request records' write-ahead log this often (power-loss "
        "durability); unset: the page cache, which survives a killed process.",
    )
    trace_database_url: str | None = Field(
        default=None,
        description="The trace store: a sqlite:/// or postgresql:// URL. Unset: the file "
        "traces.db under the data directory (SQLite metadata), else the metadata database.",
    )
    trace_max_content_chars: int = Field(
        default=16384, ge=256, le=1 << 20, description="A span's input or output is cut here."
    )
    trace_queue_spans: int = Field(
        default=16384,
        ge=512,
        le=1 << 20,
        description="Spans acknowledged and not yet stored, at most; past it ingest answers "
        "503 with Retry-After (memory stays bounded).",
    )
    trace_fsync_seconds: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="fsync the spans' write-ahead log this often; unset: the page cache.",
    )
    artifact_max_bytes: int = Field(
        default=64 * 1024**3, ge=1024, description="The largest artifact one upload may hold."
    )
    eval_concurrent_runs: int = Field(
        default=2, ge=1, le=64, description="Evaluation runs one server executes at once."
    )
    eval_lease_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="A run whose worker stopped is resumed by another this long after.",
    )
    eval_online_tick_seconds: float = Field(
        default=15, gt=0, le=3600, description="How often online evaluation rules are checked."
    )
    dataset_upload_max_bytes: int = Field(
        default=64 * 1024**2, ge=1024, description="The largest dataset file one upload may hold."
    )
    training_jobs: int = Field(
        default=1,
        ge=0,
        le=16,
        description="Fine-tuning jobs this server trains at once; 0: it trains none (another "
        "replica does).",
    )
    training_backend: Literal["local", "ray"] = Field(
        default="local",
        description="Where fine-tuning workers run: 'local' (child processes of the "
        "server) or 'ray' (actors on the Ray cluster at ray_address, each holding its "
        "job's threads as CPUs).",
    )
    ray_address: str = Field(
        default="",
        description="The Ray cluster for training_backend: ray and engine: ray "
        "deployments: an address (127.0.0.1:6379, ray://head:10001), or 'local' to start "
        "a Ray instance on this machine.",
    )
    training_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Threads a training job may use; 0: one less than the machine's cores "
        "(at least one), so that training never starves the gateway.",
    )
    training_bases: Path | None = Field(
        default=None,
        description="Where base models converted for training are kept (made from their "
        "GGUF on first use, shared by jobs); default: training/bases under the data dir.",
    )
    training_lease_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="A job whose server stopped is resumed (from its last checkpoint) by "
        "another this long after.",
    )
    serving_canary_tick_seconds: float = Field(
        default=15, gt=0, le=3600, description="How often running canaries are judged."
    )
    kb_upload_max_bytes: int = Field(
        default=32 * 1024**2, ge=1024, description="The largest document one upload may hold."
    )
    kb_index_workers: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Documents this server indexes at once; 0: it indexes none (another "
        "replica does).",
    )
    kb_index_engine: str = Field(
        default="auto",
        pattern="^(auto|embedded|pgvector)$",
        description="The vector index: 'embedded' (an HNSW graph in each process, snapshots "
        "under the data dir), 'pgvector' (in the PostgreSQL database, shared by replicas), "
        "'auto' (pgvector on PostgreSQL where the extension is there, else embedded).",
    )
    kb_sync_enabled: bool = Field(
        default=True,
        description="This server runs the syncs of knowledge bases that follow a table "
        "(off: another replica does).",
    )
    kb_lease_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="A document whose indexing worker stopped is taken up again this long after.",
    )
    kb_vector_weight: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Hybrid search: the vector ranking's weight in the fusion.",
    )
    kb_lexical_weight: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Hybrid search: the full-text ranking's weight in the fusion.",
    )
    artifact_s3_bucket: str | None = Field(
        default=None,
        description="Keep registry artifacts in this S3 bucket (any S3-compatible server); "
        "unset: files under the data directory's artifacts/.",
    )
    artifact_s3_endpoint: str | None = Field(
        default=None, description="e.g. https://s3.example.com"
    )
    artifact_s3_region: str = Field(default="us-east-1")
    artifact_s3_prefix: str = Field(default="", description="A key prefix inside the bucket.")
    artifact_s3_access_key: str | None = Field(default=None)
    artifact_s3_secret_key: SecretStr | None = Field(default=None)
    log_level: str = Field(default="info")

    @property
    def trace_store_url(self) -> str:
        if self.trace_database_url is not None:
            return self.trace_database_url
        if self.database_url is None:
            return f"sqlite:///{self.home / 'traces.db'}"
        return self.sqlalchemy_url

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value.lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    def prepare_home(self) -> None:
        """Create the data dir readable by this user only (0700), and the embedded
        database file 0600 (SQLite gives its -wal and -shm files the same mode)."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        if self.database_url is None:
            db = self.home / "shipyard.db"
            os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(db, 0o600)

    # Derived values -------------------------------------------------------------------
    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url is None:
            return f"sqlite:///{(self.home / 'shipyard.db').resolve()}"
        url = self.database_url
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    @property
    def credentials_path(self) -> Path:
        return self.home / "credentials.json"

    @property
    def is_loopback(self) -> bool:
        if self.host in LOOPBACK_HOSTS:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from shipyard.yaml (if any), the environment and overrides."""
    home = Path(overrides.get("home") or os.environ.get("SHIPYARD_HOME") or ".shipyard")
    candidates = [config_file] if config_file else [Path("shipyard.yaml"), home / "shipyard.yaml"]
    file_values: dict[str, Any] = {}
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            file_values = _read_yaml(candidate)
            break
        if config_file is not None:
            raise ConfigError(f"{config_file}: no such file")
    # Environment beats the file: drop file keys that the environment sets.
    env_keys = {k[len("SHIPYARD_") :].lower() for k in os.environ if k.startswith("SHIPYARD_")}
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
