"""`kill -9` while feedback arrives: every piece acknowledged (202) is stored after a
restart on the same data dir; a writer that cannot keep up answers 503 with
Retry-After rather than acknowledging what it cannot keep. The real server
(`shipyard up`).

The test holds the metadata database's write lock (`BEGIN IMMEDIATE` on
`shipyard.db`) from a connection of its own, so the feedback writer cannot commit:
everything acknowledged from then on exists only in the write-ahead log when the
server is killed. API keys are cached, so the request path reads nothing from the
locked database."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import orjson

from shipyard.feedback.service import CAPACITY
from tests.conftest import ADMIN_PASSWORD
from tests.support import ShipyardProcess

BATCH = 1000


def _stored(home: Path) -> set[str]:
    with sqlite3.connect(home / "shipyard.db", timeout=30) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM feedback")}


def _trace(n: int) -> str:
    return f"{n:032x}"


def test_every_acknowledged_piece_is_stored_after_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home),
        "SHIPYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHIPYARD_LOCAL_THREADS": "1",
        "SHIPYARD_LOG_LEVEL": "error",
        "SHIPYARD_KEY_CACHE_TTL_SECONDS": "3600",  # no key lookup while the lock is held
    }
    server = ShipyardProcess(home, env, 1)
    singles: list[str] = []
    batched: list[str] = []
    lock: sqlite3.Connection | None = None
    try:
        server.start()
        key = orjson.loads((home / "credentials.json").read_bytes())["api_key"]
        with httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            r = client.post("/api/feedback", json={"trace_id": _trace(1), "thumbs": "up"})
            assert r.status_code == 202, r.text  # the key is cached from here on
            singles += r.json()["ids"]
            while singles[0] not in _stored(home):  # stored: the writer's queue is empty
                time.sleep(0.05)

            lock = sqlite3.connect(home / "shipyard.db", timeout=30, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # the writer cannot commit from here on

            for n in range(2, 22):
                body = {"trace_id": _trace(n), "score": n / 100, "comment": f"piece {n}"}
                r = client.post("/api/feedback", json=body)
                assert r.status_code == 202, r.text
                singles += r.json()["ids"]

            refused: httpx.Response | None = None
            for b in range(CAPACITY // BATCH + 2):
                body = [
                    {"trace_id": _trace(100 + b), "thumbs": "down" if i % 2 else "up"}
                    for i in range(BATCH)
                ]
                r = client.post("/api/feedback/batch", json=body)
                if r.status_code != 202:
                    refused = r
                    break
                ids = r.json()["ids"]
                assert len(ids) == BATCH
                batched += ids
            assert refused is not None, "the writer's queue never filled"
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            room = CAPACITY - len(singles) + 1 - len(batched)  # the first one is stored
            last = [{"trace_id": _trace(99), "label": "last"}] * room
            r = client.post("/api/feedback/batch", json=last)
            assert r.status_code == 202, r.text  # exactly what is left is taken
            batched += r.json()["ids"]
            r = client.post("/api/feedback", json={"trace_id": _trace(2), "thumbs": "up"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text

        acked = set(singles) | set(batched)
        assert len(acked) == len(singles) + len(batched)  # ids are unique
        before = _stored(home)
        assert not (set(singles[1:]) | set(batched)) & before  # held: only in the log
        server.kill9()
        lock.rollback()
        lock.close()
        lock = None

        server.start()  # replays the write-ahead log before serving
        missing = acked - _stored(home)
        assert not missing, f"{len(missing)} acknowledged pieces lost"
        with httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            for fid in [*singles, *batched[::BATCH], batched[-1]]:
                r = client.get(f"/api/feedback/{fid}")
                assert r.status_code == 200, (fid, r.text)
            first = client.get(f"/api/feedback/{singles[2]}").json()
            assert (first["trace_id"], first["score"]) == (_trace(3), 0.03)
            assert first["comment"] == "piece 3" and first["source"] == "reviewer"
    finally:
        if lock is not None:
            lock.close()
        server.stop()
