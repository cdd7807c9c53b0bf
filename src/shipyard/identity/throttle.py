"""Login throttling that slows guessing without locking anyone out, and a bound on how
many password checks (argon2, 64 MiB each) run at once.

Failures are counted three ways, each forgotten after an hour without one:

- per client and account: after `pair_free` failures, each further attempt for that
  account from that client waits `base_seconds`, doubling per failure up to
  `max_seconds` (guessing one password);
- per client, over all accounts: the same after `client_free` failures (spraying one
  password over many accounts);
- per account, over all clients: past `account_free` failures the account is under
  attack, and each client's allowance for it drops to one failure (guessing from many
  addresses). A client with no failures for the account is never delayed by others'
  failures: an attacker cannot lock `admin@` out for its owner.

Every delay is capped, so a correct password always gets in after at most `max_seconds`.
Each table is a bounded LRU of fixed-size keys (a digest of the client and account)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    pair_free: int = 5
    client_free: int = 20
    account_free: int = 20
    base_seconds: float = 5.0
    max_seconds: float = 300.0
    forget_seconds: float = 3600.0
    max_entries: int = 20_000  # per table

    def delay(self, failures: int, free: int) -> float:
        """How long after the last failure the next attempt waits."""
        if failures < free:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(failures - free, 32))


class _Failures:
    """failures and the time of the last one, per key; least recently used dropped."""

    def __init__(self, policy: ThrottlePolicy) -> None:
        self._policy = policy
        self._rows: OrderedDict[bytes, tuple[int, float]] = OrderedDict()

    def get(self, key: bytes, now: float) -> tuple[int, float]:
        row = self._rows.get(key)
        if row is None:
            return 0, 0.0
        if now - row[1] > self._policy.forget_seconds:
            del self._rows[key]
            return 0, 0.0
        return row

    def add(self, key: bytes, now: float) -> None:
        count, _ = self.get(key, now)
        self._rows[key] = (count + 1, now)
        self._rows.move_to_end(key)
        while len(self._rows) > self._policy.max_entries:
            self._rows.popitem(last=False)

    def drop(self, key: bytes) -> None:
        self._rows.pop(key, None)

    def __len__(self) -> int:
        return len(self._rows)


def _key(*parts: str) -> bytes:
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest()


def _account(email: str) -> str:
    return email.strip().lower()


class LoginThrottle:
    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._pairs = _Failures(self.policy)
        self._clients = _Failures(self.policy)
        self._accounts = _Failures(self.policy)
        self._lock = threading.Lock()

    def blocked_for(self, client: str, email: str) -> float:
        """Seconds until this client may try this account again (0: now)."""
        p, account, now = self.policy, _account(email), self._clock()
        with self._lock:
            under_attack = self._accounts.get(_key(account), now)[0] >= p.account_free
            pair, pair_at = self._pairs.get(_key(client, account), now)
            spread, spread_at = self._clients.get(_key(client), now)
        pair_free = 1 if under_attack else p.pair_free
        until = max(
            pair_at + p.delay(pair, pair_free) if pair else 0.0,
            spread_at + p.delay(spread, p.client_free) if spread else 0.0,
        )
        return max(0.0, until - now)

    def failed(self, client: str, email: str) -> None:
        account, now = _account(email), self._clock()
        with self._lock:
            self._pairs.add(_key(client, account), now)
            self._clients.add(_key(client), now)
            self._accounts.add(_key(account), now)

    def succeeded(self, client: str, email: str) -> None:
        """The client's failures for this account are forgotten; its failures across
        accounts are not (a login to one's own account must not reset a spray)."""
        with self._lock:
            self._pairs.drop(_key(client, _account(email)))

    def sizes(self) -> tuple[int, int, int]:
        with self._lock:
            return len(self._pairs), len(self._clients), len(self._accounts)


class HashGate:
    """At most `limit` password checks at once. One more is refused at once (the caller
    answers 503 with Retry-After) instead of queueing without bound: each check holds
    64 MiB for tens of milliseconds. `in_flight` and `peak` are the metrics' gauges."""

    def __init__(self, limit: int, in_flight: Gauge, peak: Gauge) -> None:
        self.limit = limit
        self._count = 0
        self._peak = 0
        self._lock = threading.Lock()
        self._in_flight = in_flight
        self._peak_gauge = peak

    def try_enter(self) -> bool:
        with self._lock:
            if self._count >= self.limit:
                return False
            self._count += 1
            self._peak = max(self._peak, self._count)
            self._in_flight.set(self._count)
            self._peak_gauge.set(self._peak)
            return True

    def leave(self) -> None:
        with self._lock:
            self._count -= 1
            self._in_flight.set(self._count)
