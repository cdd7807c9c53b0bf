"""Login throttling: too many failed logins from one client for one account get 429."""

from __future__ import annotations

import threading
import time
from collections import deque


class LoginThrottle:
    def __init__(self, max_failures: int = 10, window_seconds: float = 300.0) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def blocked_for(self, client: str, email: str) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        with self._lock:
            q = self._prune((client, email.lower()))
            if len(q) < self._max:
                return 0.0
            return max(0.0, q[0] + self._window - time.monotonic())

    def failed(self, client: str, email: str) -> None:
        with self._lock:
            if len(self._failures) > 50_000:
                self._failures.clear()
            self._prune((client, email.lower())).append(time.monotonic())

    def succeeded(self, client: str, email: str) -> None:
        with self._lock:
            self._failures.pop((client, email.lower()), None)

    def _prune(self, key: tuple[str, str]) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        cutoff = time.monotonic() - self._window
        while q and q[0] < cutoff:
            q.popleft()
        return q
