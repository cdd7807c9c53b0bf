"""The Platform: every long-lived object of one app instance, built by `create_app`.

Capabilities hang their services here; routes reach them through `Ctx.platform`."""

from __future__ import annotations

import logging
import sys

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
