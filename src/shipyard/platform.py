"""The Platform: every long-lived object of one app instance, built by `create_app`.

Capabilities hang their services here; routes reach them through `Ctx.platform`."""

from __future__ import annotations

import logging
import sys

from shipyard.gateway.balancer import Balancer
from shipyard.gateway.crypto import SecretBox
from shipyard.gateway.executor import RetryPolicy
from shipyard.gateway.limits import LimitBackend
from shipyard.gateway.service import Gateway
from shipyard.http.metrics import Metrics
from shipyard.identity.authn import KeyAuthenticator, SessionAuthenticator
from shipyard.identity.bootstrap import FirstStart, bootstrap
from shipyard.identity.throttle import LoginThrottle
from shipyard.settings import Settings
from shipyard.store import Database

log = logging.getLogger("shipyard")


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.sqlalchemy_url)
        self.metrics = Metrics()
        self.keys = KeyAuthenticator(self.db, ttl=settings.key_cache_ttl_seconds)
        self.sessions = SessionAuthenticator(self.db, ttl_hours=settings.session_ttl_hours)
        self.login_throttle = LoginThrottle()
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.box = SecretBox(secret, settings.home / "secret.key")
        self.gateway = Gateway(
            db=self.db,
            box=self.box,
            registry=self.metrics.registry,
            backend=_limit_backend(settings),
            retry=RetryPolicy(base=settings.gateway_retry_base_seconds),
            balancer=Balancer(
                failures=settings.gateway_cooldown_failures,
                cooldown=settings.gateway_cooldown_seconds,
            ),
            local_threads=settings.local_threads,
            probe_interval=settings.gateway_probe_seconds,
        )
        self.first_start: FirstStart | None = None
        self.started = False

    def start(self) -> None:
        """Migrate the store and run the first-start bootstrap. Idempotent."""
        if self.started:
            return
        self.db.upgrade()
        self.first_start = bootstrap(self.db, self.settings)
        if self.first_start is not None:
            announce(self.first_start)
        self.started = True

    def stop(self) -> None:
        self.db.close()


def _limit_backend(settings: Settings) -> LimitBackend | None:
    if settings.redis_url is None:
        return None  # the gateway's in-process default
    from shipyard.gateway.redis_backend import RedisBackend

    return RedisBackend(settings.redis_url)


def announce(first: FirstStart) -> None:
    """Print the one-time credentials on the console (never to a log)."""
    lines = [
        "",
        "Shipyard first start: an administrator was created.",
        f"  login:    {first.email}",
    ]
    if first.password:
        lines.append(f"  password: {first.password}   (shown once; change it after logging in)")
    lines += [
        f"  API key:  {first.api_key}   (shown once)",
        f"  The CLI credential was saved to {first.credentials_path} (mode 0600).",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
