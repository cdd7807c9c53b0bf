"""`kill -9` during OTLP ingest: every span whose batch was acknowledged is in the trace
store after a restart on the same data dir. The real server (`shipyard up`), concurrent
exporters sending protobuf batches.

The test takes the trace store's writer lock part-way through the load, so the writer
cannot store anything from then on: the last acknowledged batches exist only in the
write-ahead log when the server is killed (and the exporters see 503s once the queue
is full: no more is acknowledged than can be kept)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import sqlite3
import sys
from pathlib import Path

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import ADMIN_PASSWORD
from tests.support import ShipyardProcess

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import otlp_payload  # noqa: E402


def _span_ids(batch: bytes) -> set[str]:
    request = ExportTraceServiceRequest.FromString(batch)
    return {
        s.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    }


def _stored(home: Path) -> set[str]:
    with sqlite3.connect(home / "traces.db", timeout=30) as conn:
        return {row[0] for row in conn.execute("SELECT span_id FROM trace_spans")}


def test_every_acknowledged_span_is_stored_after_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home),
        "SHIPYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHIPYARD_LOCAL_THREADS": "1",
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_TRACE_QUEUE_SPANS": "4096",
    }
    server = ShipyardProcess(home, env, 1)
    rng = random.Random(7)
    batches = [otlp_payload.batch(rng, spans=128) for _ in range(120)]
    acked: set[str] = set()
    refused = 0
    try:
        server.start()
        key = orjson.loads((home / "credentials.json").read_bytes())["api_key"]
        headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"}
        lock_fd = os.open(home / "traces.writer.lock", os.O_RDWR | os.O_CREAT)

        async def run() -> None:
            nonlocal refused
            pending = list(batches)
            sent = 0

            async def exporter(client: httpx.AsyncClient) -> None:
                nonlocal refused, sent
                while pending:
                    batch = pending.pop()
                    sent += 1
                    if sent == 20:  # from here on the writer cannot store anything
                        fcntl.flock(lock_fd, fcntl.LOCK_EX)
                    try:
                        r = await client.post("/v1/traces", content=batch, headers=headers)
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 200:
                        acked.update(_span_ids(batch))
                    else:
                        assert r.status_code == 503, r.text
                        refused += 1

            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                await asyncio.gather(*(exporter(client) for _ in range(3)))

        asyncio.run(run())
        before = _stored(home)
        server.kill9()
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
        assert refused > 0  # the queue filled while the writer was held
        assert acked - before, "some acknowledged spans must exist only in the log"

        server.start()  # replays the write-ahead log before serving
        missing = acked - _stored(home)
        assert not missing, f"{len(missing)} acknowledged spans lost"
    finally:
        server.stop()
