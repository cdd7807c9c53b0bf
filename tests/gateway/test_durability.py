"""`kill -9` under load: every request whose response was received is in the records
after a restart on the same data dir. The real server (`shipyard up`, one process and
`--workers 2`), the fake upstream on loopback, concurrent clients (unary and streamed).

To make the write-ahead log the only place the last records can be, the test holds
SQLite's write lock part-way through the load: the record writer cannot store anything
from then on (it retries, dropping nothing), the acknowledged responses keep coming, and
then the server is killed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.fake_upstream import FakeUpstream
from tests.support import ShipyardProcess as Server

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(params=[1, pytest.param(2, marks=pytest.mark.redis)], ids=["1", "workers-2"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHIPYARD_LOCAL_THREADS": "1",
        "SHIPYARD_LOG_LEVEL": "warning",
    }
    if request.param > 1:
        env["SHIPYARD_REDIS_URL"] = request.getfixturevalue("redis_url")
    found = Server(tmp_path / "home", env, request.param)
    try:
        yield found
    finally:
        found.stop()


def _stored_ids(home: Path) -> set[str]:
    with sqlite3.connect(home / "shipyard.db", timeout=30) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM gateway_requests")}


async def _load(url: str, key: str, acked: list[str], enough: asyncio.Event) -> None:
    """Clients in parallel until the server dies; a request id counts once its response
    was received whole (a streamed one: up to `data: [DONE]`)."""
    headers = {"Authorization": f"Bearer {key}"}

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            i = 0
            while True:
                i += 1
                body = {"model": "mini", "messages": MSG, "user": f"u{n}"}
                try:
                    if i % 4 == 0:
                        body["stream"] = True
                        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                            text = b"".join([part async for part in r.aiter_bytes()])
                            if r.status_code == 200 and text.endswith(b"data: [DONE]\n\n"):
                                acked.append(r.headers["x-request-id"])
                    else:
                        r = await http.post("/v1/chat/completions", json=body)
                        if r.status_code == 200 and r.json()["choices"]:
                            acked.append(r.headers["x-request-id"])
                except (httpx.HTTPError, ValueError):
                    if enough.is_set():
                        return  # the server is gone
                    await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(client(n)) for n in range(12)]
    await asyncio.gather(*tasks)


def test_every_acknowledged_request_is_recorded_after_kill_9(server: Server) -> None:
    upstream = FakeUpstream().start()
    try:
        server.start()
        key = orjson.loads((server.home / "credentials.json").read_bytes())["api_key"]
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as admin:
            admin.post(
                "/api/gateway/providers",
                json={
                    "name": "fake",
                    "kind": "openai",
                    "base_url": upstream.url,
                    "api_key": "sk-x",
                    "allow_internal": True,  # a loopback upstream: the platform admin's call
                },
            ).raise_for_status()
            admin.put(
                "/api/gateway/routes/mini",
                json={"name": "mini", "deployments": [{"provider": "fake", "model": "m"}]},
            ).raise_for_status()
            admin.put("/api/gateway/prices/m", json={"input": 0, "output": 1000}).raise_for_status()
            made = admin.post("/api/keys", json={"name": "load", "role": "app"}).json()
            app_key, app_key_id = made["key"], made["id"]
            admin.put(  # a budget the load never reaches: the restart must keep its count
                f"/api/gateway/limits/key/{app_key_id}",
                json={"budget_usd": 1000.0, "budget_period": "total"},
            ).raise_for_status()
        if server.workers > 1:
            time.sleep(2.5)  # every worker polls the configuration version (2 s)

        acked: list[str] = []
        dead: list[bytes] = []
        lock = sqlite3.connect(server.home / "shipyard.db", timeout=30, isolation_level=None)

        async def run() -> int:
            enough = asyncio.Event()
            load = asyncio.create_task(_load(server.url, app_key, acked, enough))
            while len(acked) < 100:
                await asyncio.sleep(0.01)
            lock.execute("BEGIN IMMEDIATE")  # from here on the writer cannot store anything
            locked_at = len(acked)
            while len(acked) < locked_at + 200:
                await asyncio.sleep(0.01)
            enough.set()
            server.kill9()  # mid-load: requests in flight, records queued, none stored
            if server.workers > 1:  # the killed replicas, by their heartbeats on Redis
                dead[:] = _heartbeats(server)
            await load
            return locked_at

        locked_at = asyncio.run(run())
        lock.execute("ROLLBACK")
        lock.close()
        before_restart = _stored_ids(server.home)
        missing_then = set(acked) - before_restart
        # only the log had them (12: at most one request per client was in flight when
        # the lock was taken, and its record may have been stored just before)
        assert set(acked[locked_at + 12 :]) <= missing_then

        server.start()  # same data dir: the log is replayed before it serves
        if server.workers > 1:  # workers get ready one by one; each replays before serving
            deadline = time.monotonic() + 60
            while not set(acked) <= _stored_ids(server.home) and time.monotonic() < deadline:
                time.sleep(0.1)
        stored = _stored_ids(server.home)
        assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged records lost"
        assert len(acked) == len(set(acked))
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as admin:
            listed = admin.get("/api/gateway/requests", params={"limit": 1000}).json()
            assert {r["id"] for r in listed} >= set(acked[-200:])  # the newest, via the API
            _budget_is_exact(server, admin, app_key, app_key_id, dead)
    finally:
        upstream.stop()


def _heartbeats(server: Server) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(server.env["SHIPYARD_REDIS_URL"])
    try:
        return list(client.keys("shipyard:h:*"))
    finally:
        client.close()


def _budget_is_exact(
    server: Server, admin: httpx.Client, key: str, key_id: str, dead: list[bytes]
) -> None:
    """After the restart the spend the API shows is the ledger's (every stored record of
    the key), and the budget counter holds exactly that: a budget set to leave room for
    three more calls lets three through and refuses the fourth. On Redis, what the
    killed replicas held for calls in flight is let go once their heartbeats lapse."""
    deadline = time.monotonic() + 60
    while dead and set(dead) & set(_heartbeats(server)):
        assert time.monotonic() < deadline, "a killed replica's heartbeat never lapsed"
        time.sleep(0.5)
    with sqlite3.connect(server.home / "shipyard.db", timeout=30) as conn:
        (ledger,) = conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM gateway_requests WHERE key_id = ?",
            (key_id,),
        ).fetchone()
    limits = admin.get("/api/gateway/limits").json()
    mine = next(lim for lim in limits if lim["scope"] == f"key:{key_id}")
    assert mine["spent_usd"] == pytest.approx(ledger)
    per_call = 5 * 1000 / 1e6  # the fake upstream's 5 completion tokens
    admin.put(
        f"/api/gateway/limits/key/{key_id}",
        json={"budget_usd": ledger + 3 * per_call + 1e-9, "budget_period": "total"},
    ).raise_for_status()
    if server.workers > 1:
        time.sleep(2.5)  # the other worker reloads by polling the configuration version
    body = {"model": "mini", "messages": MSG, "max_tokens": 5}
    headers = {"Authorization": f"Bearer {key}"}
    codes = [
        httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429], codes
