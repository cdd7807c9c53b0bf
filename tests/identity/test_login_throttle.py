"""Login floods, attacked the way an attacker would: guessing one account, spraying many
from one address, hammering `admin@` to lock its owner out, and many logins at once.
The throttle runs on a test clock (time moves only when the test says so)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.identity.throttle import LoginThrottle, ThrottlePolicy
from shipyard.settings import load_settings
from tests.conftest import ADMIN_PASSWORD
from tests.support import form_login, live_server

ADMIN = "admin@example.com"
WRONG = "wrong-password-123"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    """The app behind a trusted reverse proxy at 10.0.0.2 (the socket peer)."""
    settings = load_settings(
        home=tmp_path / "home",
        admin_password=ADMIN_PASSWORD,
        admin_email=ADMIN,
        trusted_proxies=["10.0.0.0/24"],
    )
    app = create_app(settings)
    clock = Clock()
    app.state.platform.login_throttle = LoginThrottle(clock=clock)
    with TestClient(app, base_url="http://localhost", client=("10.0.0.2", 40000)) as c:
        key = orjson.loads(settings.credentials_path.read_bytes())["api_key"]
        c.headers["Authorization"] = f"Bearer {key}"
        yield c, clock


def attempt(app_client: TestClient, client_ip: str, email: str, password: str) -> httpx.Response:
    browser = TestClient(
        app_client.app,
        base_url="http://localhost",
        follow_redirects=False,
        client=("10.0.0.2", 40000),
    )
    return form_login(browser, email, password, headers={"X-Forwarded-For": client_ip})


def test_an_attacker_cannot_lock_admin_out_for_a_client_elsewhere(
    proxied: tuple[TestClient, Clock],
) -> None:
    client, clock = proxied
    statuses = [attempt(client, "203.0.113.9", ADMIN, WRONG).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    throttled = attempt(client, "203.0.113.9", ADMIN, ADMIN_PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    # the owner, behind the same proxy but from another address, gets in at once
    assert attempt(client, "198.51.100.7", ADMIN, ADMIN_PASSWORD).status_code == 303
    # and the attacker is slowed, not locked out: once the delay passes it may try again
    clock.now += 3600
    assert attempt(client, "203.0.113.9", ADMIN, WRONG).status_code == 401


def test_a_forged_forwarded_for_does_not_pick_the_client(
    proxied: tuple[TestClient, Clock],
) -> None:
    client, _ = proxied
    # the attacker writes its own X-Forwarded-For; the proxy appends the real peer:
    # the rightmost address that is not a trusted proxy is the client
    for n in range(7):
        r = attempt(client, f"192.0.2.{n}, 203.0.113.9, 10.0.0.3", ADMIN, WRONG)
    assert r.status_code == 429
    # a peer that is not a trusted proxy cannot choose its address with the header
    direct = TestClient(client.app, base_url="http://localhost", client=("198.51.100.1", 1))
    r = form_login(direct, ADMIN, WRONG, headers={"X-Forwarded-For": "192.0.2.200"})
    assert r.status_code == 401
    # the audit names the real sources
    rows = client.get("/api/audit", params={"action": "ui.login"}).json()
    assert {row["client_addr"] for row in rows} == {"203.0.113.9", "198.51.100.1"}


def test_spraying_many_accounts_from_one_address_is_slowed(
    proxied: tuple[TestClient, Clock],
) -> None:
    client, _ = proxied
    statuses = [
        attempt(client, "203.0.113.50", f"user{n}@example.com", WRONG).status_code
        for n in range(30)
    ]
    free = ThrottlePolicy().client_free
    assert statuses[:free] == [401] * free
    assert set(statuses[free:]) == {429}
    # another address is not affected
    assert attempt(client, "198.51.100.7", "user0@example.com", WRONG).status_code == 401


def test_guessing_one_account_from_many_addresses_tightens_each_allowance(
    proxied: tuple[TestClient, Clock],
) -> None:
    client, _ = proxied
    policy = ThrottlePolicy()
    addresses = [f"203.0.113.{n}" for n in range(policy.account_free // policy.pair_free)]
    for ip in addresses:
        for _ in range(policy.pair_free):
            assert attempt(client, ip, ADMIN, WRONG).status_code == 401
    # the account is under attack: a new address gets one failure, then waits...
    assert attempt(client, "192.0.2.77", ADMIN, WRONG).status_code == 401
    assert attempt(client, "192.0.2.77", ADMIN, WRONG).status_code == 429
    # ...while an address without failures still logs in
    assert attempt(client, "198.51.100.7", ADMIN, ADMIN_PASSWORD).status_code == 303


def test_delays_grow_are_capped_and_memory_is_bounded() -> None:
    clock = Clock()
    policy = ThrottlePolicy(max_entries=100)
    throttle = LoginThrottle(policy, clock=clock)
    waits = []
    for _ in range(20):
        wait = throttle.blocked_for("203.0.113.9", ADMIN)
        waits.append(wait)
        clock.now += wait
        throttle.failed("203.0.113.9", ADMIN)
    assert waits[: policy.pair_free] == [0.0] * policy.pair_free
    grown = waits[policy.pair_free :]
    assert grown == sorted(grown) and grown[0] == policy.base_seconds
    assert max(grown) == policy.max_seconds  # slowed, never locked out
    # a success forgets the account's failures, not the address's (20, over all accounts)
    throttle.succeeded("203.0.113.9", ADMIN)
    assert throttle.blocked_for("203.0.113.9", ADMIN) == policy.delay(20, policy.client_free)
    for n in range(5000):
        throttle.failed(f"2001:db8::{n:x}", f"user{n}@example.com")
    assert max(throttle.sizes()) <= 100


def test_a_login_flood_never_runs_more_than_n_password_checks(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        admin_password=ADMIN_PASSWORD,
        admin_email=ADMIN,
        trusted_proxies=["127.0.0.1"],
        login_hash_concurrency=2,
    )
    app = create_app(settings)
    flood = 24
    start = threading.Barrier(flood)

    def one(n: int) -> httpx.Response:
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as c:
            page = c.get("/login", headers=headers)
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            start.wait()
            return c.post(
                "/login",
                data={"email": f"user{n}@example.com", "password": WRONG, "csrf_token": token},
                headers=headers,
            )

    with live_server(app) as url:  # type: ignore[arg-type]
        with ThreadPoolExecutor(flood) as pool:
            replies = list(pool.map(one, range(flood)))
        key = orjson.loads(settings.credentials_path.read_bytes())["api_key"]
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {401, 503}
    assert all(r.headers["Retry-After"] == "1" for r in replies if r.status_code == 503)
    assert statuses.count(401) >= 2
    gauges = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("shipyard_login_password_checks")
    }
    assert 1 <= gauges["shipyard_login_password_checks_peak"] <= 2
    assert gauges["shipyard_login_password_checks_in_flight"] == 0
    busy = statuses.count(503)
    if busy:
        assert f'shipyard_login_refusals_total{{reason="busy"}} {float(busy)}' in metrics


def test_a_login_past_the_bound_is_refused_at_once(proxied: tuple[TestClient, Clock]) -> None:
    client, _ = proxied
    gate = client.app.state.platform.login_gate  # type: ignore[attr-defined]
    held = [gate.try_enter() for _ in range(gate.limit)]  # checks running elsewhere
    assert all(held) and not gate.try_enter()
    try:
        r = attempt(client, "198.51.100.7", ADMIN, ADMIN_PASSWORD)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    finally:
        for _ in held:
            gate.leave()
    assert attempt(client, "198.51.100.7", ADMIN, ADMIN_PASSWORD).status_code == 303
    assert 'shipyard_login_refusals_total{reason="busy"} 1.0' in client.get("/metrics").text
