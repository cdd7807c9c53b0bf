"""`shipyard up --workers N`: N processes on one port, sharing limits, budgets, the
cache and key revocations through Redis (a real redis-server started by the fixtures)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.fake_upstream import FakeUpstream
from tests.support import free_port

pytestmark = pytest.mark.redis
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str, FakeUpstream, int]]:
    upstream = FakeUpstream().start()
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHIPYARD_REDIS_URL": redis_url,
        "SHIPYARD_LOCAL_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "up", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "workers did not become ready"
            time.sleep(0.1)
        key = orjson.loads((tmp_path / "home" / "credentials.json").read_bytes())["api_key"]
        yield url, key, upstream, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        upstream.stop()


async def _burst(url: str, key: str, n: int, body: dict[str, object]) -> Counter[int]:
    """n calls, each on a fresh connection, so the kernel spreads them over the workers."""

    async def one() -> int:
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            return r.status_code

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


def _worker_cpu(parent: int) -> dict[int, float]:
    """CPU seconds of each worker process (children spawned by uvicorn's supervisor)."""
    out = {}
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            out[int(child)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def test_limits_budgets_cache_and_revocation_hold_across_workers(
    workers: tuple[str, str, FakeUpstream, int],
) -> None:
    url, owner, upstream, parent = workers
    h = {"Authorization": f"Bearer {owner}"}
    with httpx.Client(base_url=url, headers=h, timeout=30) as admin:
        admin.post(
            "/api/gateway/providers",
            json={
                "name": "fake",
                "kind": "openai",
                "base_url": upstream.url,
                "api_key": "sk-x",
                "allow_internal": True,  # loopback; the bootstrap key may
            },
        ).raise_for_status()
        admin.put(
            "/api/gateway/routes/mini",
            json={
                "name": "mini",
                "cache_ttl": 60,
                "deployments": [{"provider": "fake", "model": "gpt-4o-mini"}],
            },
        ).raise_for_status()
        admin.put("/api/gateway/prices/pricey", json={"input": 0, "output": 1000})
        admin.put(
            "/api/gateway/routes/pricey",
            json={"name": "pricey", "deployments": [{"provider": "fake", "model": "pricey"}]},
        ).raise_for_status()

        def key(name: str, **limits: object) -> str:
            made = admin.post("/api/keys", json={"name": name, "role": "app"}).json()
            if limits:
                admin.put(f"/api/gateway/limits/key/{made['id']}", json=limits).raise_for_status()
            return str(made["key"])

        rated = key("rated", rpm=10)
        budgeted = key("budgeted", budget_usd=5 * 5 * 1000 / 1e6, budget_period="total")
        cached = key("cached")
        time.sleep(2.5)  # every worker polls the configuration version (2 s)
    before = _worker_cpu(parent)
    assert len(before) == 2, "two worker processes"

    body = {"model": "mini", "messages": MSG}
    unique = [{**body, "messages": [{"role": "user", "content": f"n{i}"}]} for i in range(30)]

    async def rate() -> Counter[int]:
        out: Counter[int] = Counter()
        for chunk in (unique[:15], unique[15:]):
            async with httpx.AsyncClient(timeout=30) as http:
                codes = await asyncio.gather(
                    *(
                        http.post(
                            url + "/v1/chat/completions",
                            json=b,
                            headers={"Authorization": f"Bearer {rated}"},
                        )
                        for b in chunk
                    )
                )
            out.update(r.status_code for r in codes)
        return out

    assert asyncio.run(rate()) == Counter({200: 10, 429: 20})  # rpm 10, over both workers
    paid = asyncio.run(
        _burst(url, budgeted, 20, {"model": "pricey", "messages": MSG, "max_tokens": 5})
    )
    assert paid == Counter({200: 5, 429: 15})  # the budget covers exactly five calls
    after = _worker_cpu(parent)
    assert all(after[pid] > before[pid] for pid in before), "both workers served calls"

    calls_before = len(upstream.requests)
    hits = []
    for _ in range(6):
        with httpx.Client(timeout=30) as http:
            r = http.post(
                url + "/v1/chat/completions",
                json={**body, "messages": [{"role": "user", "content": "same"}]},
                headers={"Authorization": f"Bearer {cached}"},
            )
        hits.append(r.headers["x-shipyard-cache"])
    assert hits[0] == "miss" and hits[1:] == ["hit"] * 5  # one cache for every worker
    assert len(upstream.requests) == calls_before + 1

    # warm the revoked key into both workers' caches, then revoke through one of them
    assert asyncio.run(_burst(url, cached, 10, body)) == Counter({200: 10})
    with httpx.Client(base_url=url, headers=h, timeout=30) as admin:
        key_id = next(k["id"] for k in admin.get("/api/keys").json() if k["name"] == "cached")
        admin.delete(f"/api/keys/{key_id}").raise_for_status()
    time.sleep(0.5)  # the broadcast, well under key_cache_ttl_seconds (30 s)
    assert asyncio.run(_burst(url, cached, 20, body)) == Counter({401: 20})
