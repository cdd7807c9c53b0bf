"""Tracing ingest benchmark: Shipyard's OTLP/HTTP ingest beside MLflow's and Arize
Phoenix's, in one run. Prints figures; asserts nothing.

    .venv/bin/python bench/tracing.py [--quick] [--no-peers] [--spans N] [--pin] [--workers N]

The payload is bench/otlp_payload.py's: 5-span GenAI agent traces (root, chat, tool, chat,
embeddings; gen_ai.* and OpenInference attributes; 500-byte inputs and outputs) as OTLP
protobuf export requests of 512 spans, built before timing. Every request carries fresh
trace and span ids (a counter written over the first 4 bytes of each id of a prebuilt
batch), so no store can fold repeats.

Servers, each on a fresh local store of its own, bound to 127.0.0.1:
  - Shipyard: `python -m shipyard.cli up` on a temporary data dir (SQLite traces.db),
    the bootstrap owner key;
  - MLflow 3.17.2 (`mlflow server`, SQLite mlflow.db) and Arize Phoenix 20.26.1
    (`phoenix serve`, SQLite phoenix.db), each installed once into its own venv under
    ~/.cache/shipyard-bench, pinned exactly, telemetry off.
Each is warmed (untimed, reported) and then measured at concurrency 1, 2 and 4 (async
aiohttp clients, each sending a request once the last one is answered, and a 503 again
after its Retry-After, as OTLP exporters do), for a fixed duration (Phoenix, which answers
before it stores, also stops at about what it stored in that time warm):
  - acknowledged spans/s (spans answered 200, over the time load ran);
  - durable spans/s: spans counted in the server's own store afterwards (Shipyard's
    trace_spans, Phoenix's spans, MLflow's spans table; read-only SQLite), over the time
    from the first request until the last of them was stored;
  - server CPU per stored span (user + system of the process tree, from the first
    request until the last span was stored), p50/p99 acknowledgement latency of a batch,
    and the peak RSS of the process tree (MiB).
Then Shipyard alone under overload (16 clients): 503s with and
without Retry-After, peak RSS, and whether every acknowledged span was stored. Then, with
`--spans N` (not 0), bench/trace_store.py fills a SQLite trace store with N spans and
times the trace list with two filters and the dashboard aggregation (p95).
With `--workers N` (N > 1), Shipyard runs N worker processes (`shipyard up --workers N`,
which shares its limits through Redis: Debian's redis-server is started on a Unix socket),
each reading and masking its own requests; one writer at a time stores them.
With `--pin`, servers run on core 0 and this script on core 1 (as bench/gateway.py does);
by default nothing is pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import orjson
import otlp_payload
from harness import (
    ALL_CPUS,
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    PeakRss,
    free_port,
    start_redis,
    stop,
    tree_cpu_seconds,
    wait_http,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shipyard-bench"
PEERS = {
    "MLflow": ("mlflow", "3.17.2", "mlflow"),
    "Phoenix": ("arize-phoenix", "20.26.1", "phoenix"),
}
BATCH = 512
LEVELS = (1, 2, 4)
MIB = 2**20
PROTOBUF = {"Content-Type": "application/x-protobuf"}

# --- payloads ---------------------------------------------------------------------------


class Payloads:
    """A few prebuilt export requests; each `next()` is one of them with fresh ids."""

    def __init__(self, templates: int = 8, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.templates: list[tuple[bytes, list[int]]] = []
        for _ in range(templates):
            body = otlp_payload.batch(rng, spans=BATCH)
            req = ExportTraceServiceRequest.FromString(body)
            ids = {
                bytes(x)
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
                for x in (s.trace_id, s.span_id)
            }
            offsets = sorted(pos for i in ids for pos in _find_all(body, i))
            self.templates.append((body, offsets))
        self.size = len(self.templates[0][0])
        self._count = itertools.count(1)

    def next(self) -> bytes:
        n = next(self._count)
        body, offsets = self.templates[n % len(self.templates)]
        out = bytearray(body)
        prefix = n.to_bytes(4, "big")
        for pos in offsets:
            out[pos : pos + 4] = prefix
        return bytes(out)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out, pos = [], data.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = data.find(needle, pos + 1)
    return out


# --- servers ----------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    url: str  # the OTLP/HTTP traces endpoint
    headers: dict[str, str]
    count: Callable[[], int]  # spans in the server's own store
    close: Callable[[], None]
    start_s: float = math.nan
    acks_first: bool = False  # answers 200 before it stores the spans
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


def _popen(cmd: list[str], env: dict[str, str], cwd: Path, pin: bool) -> subprocess.Popen[bytes]:
    if pin:
        cmd = ["taskset", "-c", SERVER_CPU, *cmd]
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "server.log", "wb"),  # noqa: SIM115 - the child keeps it
        start_new_session=True,  # its own process group: the whole tree is stopped
    )


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers left behind by the parent
        os.killpg(proc.pid, signal.SIGKILL)


def _sqlite_count(path: Path, table: str) -> Callable[[], int]:
    def count() -> int:
        if not path.exists():
            return 0
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise

    return count


def _failed(home: Path, what: str) -> SystemExit:
    log = home / "server.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    return SystemExit(f"{what} did not come up:\n{tail}")


def start_shipyard(pin: bool, workers: int = 1) -> Target:
    home = Path(tempfile.mkdtemp(prefix="shipyard-trace-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home / "home"),
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_ADMIN_PASSWORD": "Bench-Passphrase-2026",
    }
    redis: subprocess.Popen[bytes] | None = None
    if workers > 1:
        redis, env["SHIPYARD_REDIS_URL"] = start_redis(home, LOAD_CPU if pin else ALL_CPUS)
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "shipyard.cli", "up"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    began = time.perf_counter()
    proc = _popen([*cmd, "--port", str(port)], env, home, pin)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz", timeout=90)
    except SystemExit:
        _stop_group(proc)
        if redis is not None:
            stop(redis, 10, signal.SIGTERM)
        raise _failed(home, "Shipyard") from None
    key = orjson.loads((home / "home" / "credentials.json").read_bytes())["api_key"]

    def close() -> None:
        _stop_group(proc)
        if redis is not None:
            stop(redis, 10, signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)

    t = Target(
        "Shipyard",
        proc,
        url + "/v1/traces",
        {"Authorization": f"Bearer {key}"},
        _sqlite_count(home / "home" / "traces.db", "trace_spans"),
        close,
        start_s=time.perf_counter() - began,
    )
    t.notes.append(
        "200 once the spans are in the write-ahead log; SQLite traces.db"
        + (f"; {workers} worker processes" if workers > 1 else "")
    )
    return t


def ensure_peer(name: str) -> Path | None:
    package, version, exe = PEERS[name]
    venv = CACHE / f"peer-{exe}-{version}"
    python = venv / "bin" / "python"
    probe = f"import importlib.metadata as m; print(m.version({package!r}))"
    if python.exists():
        got = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == version:
            return venv / "bin" / exe
    print(f"installing {package}=={version} into {venv} (once, minutes) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{package}=={version}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        print(f"(could not install {package}=={version}: skipping {name})\n{done.stderr[-1500:]}")
        return None
    return venv / "bin" / exe


def start_mlflow(exe: Path, pin: bool) -> Target:
    home = Path(tempfile.mkdtemp(prefix="mlflow-trace-bench-"))
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    began = time.perf_counter()
    # uvicorn kills a worker that misses its 5 s health check, and a worker busy with one
    # 512-span request on a loaded machine misses it (its requests die unanswered)
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--uvicorn-opts", "--timeout-worker-healthcheck 120"]
    proc = _popen(cmd, env, home, pin)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout=240)
        r = httpx.post(
            url + "/api/2.0/mlflow/experiments/create", json={"name": "bench"}, timeout=60
        )
        r.raise_for_status()
    except (SystemExit, httpx.HTTPError):
        _stop_group(proc)
        raise _failed(home, "MLflow") from None
    experiment = r.json()["experiment_id"]

    def close() -> None:
        _stop_group(proc)
        shutil.rmtree(home, ignore_errors=True)

    t = Target(
        f"MLflow {PEERS['MLflow'][1]}",
        proc,
        url + "/v1/traces",
        {"x-mlflow-experiment-id": str(experiment)},
        _sqlite_count(home / "mlflow.db", "spans"),
        close,
        start_s=time.perf_counter() - began,
    )
    t.notes.append(
        "200 once stored (SQLite mlflow.db); 4 uvicorn workers, health check timeout 120 s"
    )
    return t


def start_phoenix(exe: Path, pin: bool) -> Target:
    home = Path(tempfile.mkdtemp(prefix="phoenix-trace-bench-"))
    port, grpc = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(home),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
    }
    began = time.perf_counter()
    proc = _popen([str(exe), "serve"], env, home, pin)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", timeout=240)
    except SystemExit:
        _stop_group(proc)
        raise _failed(home, "Phoenix") from None

    def close() -> None:
        _stop_group(proc)
        shutil.rmtree(home, ignore_errors=True)

    t = Target(
        f"Phoenix {PEERS['Phoenix'][1]}",
        proc,
        url + "/v1/traces",
        {},
        _sqlite_count(home / "phoenix.db", "spans"),
        close,
        start_s=time.perf_counter() - began,
    )
    t.acks_first = True
    t.notes.append(
        "200 before the spans are written (SQLite phoenix.db); its gRPC port listens on "
        "[::] (no setting binds it to loopback)"
    )
    return t


# --- load -------------------------------------------------------------------------------


@dataclass
class Load:
    concurrency: int
    requests: int = 0
    acked: int = 0  # spans answered 200, less those rejected in partial_success
    refused: int = 0  # 503
    refused_retry_after: int = 0  # 503 with a Retry-After header
    errors: int = 0  # any other status, or a connection error
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms, 200s only
    statuses: dict[int, int] = field(default_factory=dict)


async def run_load(
    t: Target,
    payloads: Payloads,
    concurrency: int,
    seconds: float,
    max_requests: int | None = None,
    retry: bool = True,
) -> Load:
    """`concurrency` clients, each sending its next batch once the last is answered, until
    `seconds` or `max_requests` are spent. With `retry`, a 503 is retried (same batch)
    after its Retry-After, as an OTLP exporter does."""
    out = Load(concurrency)
    headers = {**PROTOBUF, **t.headers}
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    sent = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        end = began + seconds

        async def client() -> None:
            nonlocal sent
            body: bytes | None = None
            while time.perf_counter() < end:
                if body is None:
                    if max_requests is not None and sent >= max_requests:
                        return
                    sent += 1
                    body = payloads.next()
                t0 = time.perf_counter()
                try:
                    async with http.post(t.url, data=body, headers=headers) as r:
                        data = await r.read()
                        status, retry_after = r.status, r.headers.get("Retry-After")
                except (TimeoutError, aiohttp.ClientError):
                    out.requests += 1
                    out.errors += 1
                    body = None
                    continue
                out.requests += 1
                out.statuses[status] = out.statuses.get(status, 0) + 1
                if status == 200:
                    out.latencies.append((time.perf_counter() - t0) * 1000)
                    out.acked += BATCH - _rejected(data)
                    body = None
                elif status == 503:
                    out.refused += 1
                    out.refused_retry_after += retry_after is not None
                    if retry:
                        with contextlib.suppress(ValueError):
                            await asyncio.sleep(min(float(retry_after or 1), 5.0))
                    else:
                        body = None
                else:
                    out.errors += 1
                    body = None

        await asyncio.gather(*(client() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - began
    return out


def _rejected(data: bytes) -> int:
    with contextlib.suppress(Exception):
        return int(ExportTraceServiceResponse.FromString(data).partial_success.rejected_spans)
    return 0


def wait_stored(t: Target, expected: int, stall_s: float, timeout_s: float) -> tuple[int, float]:
    """Poll the store until it holds `expected` spans, stops growing for `stall_s`, or
    `timeout_s` passes: (spans counted, monotonic time the last of them was seen)."""
    deadline = time.monotonic() + timeout_s
    last = t.count()
    last_at = time.monotonic()
    while last < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        now = t.count()
        if now != last:
            last, last_at = now, time.monotonic()
        elif time.monotonic() - last_at > stall_s:
            break
    return last, last_at


@dataclass
class Row:
    server: str
    concurrency: int
    load: Load
    stored: int
    durable_s: float
    cpu_s: float
    peak_rss: float  # MiB
    drained: bool  # every acknowledged span was stored

    @property
    def acked_rate(self) -> float:
        return self.load.acked / self.load.seconds if self.load.seconds else math.nan

    @property
    def durable_rate(self) -> float:
        return self.stored / self.durable_s if self.durable_s > 0 else math.nan

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.stored * 1e6 if self.stored else math.nan

    def pct(self, q: float) -> float:
        lat = sorted(self.load.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else math.nan


def measure(
    t: Target,
    payloads: Payloads,
    concurrency: int,
    seconds: float,
    max_requests: int | None,
    *,
    drain_s: float = 300,
) -> Row:
    rss = PeakRss(t.pid)
    before = t.count()
    cpu0 = tree_cpu_seconds(t.pid)
    t0 = time.monotonic()
    with rss.sampling():
        load = asyncio.run(run_load(t, payloads, concurrency, seconds, max_requests))
        stored, at = wait_stored(t, before + load.acked, stall_s=30, timeout_s=drain_s)
    cpu = tree_cpu_seconds(t.pid) - cpu0
    stored -= before
    return Row(
        t.name,
        concurrency,
        load,
        stored,
        max(at, t0 + load.seconds) - t0 if stored else math.nan,
        cpu,
        rss.peak * 1e6 / MIB,
        stored >= load.acked,
    )


# --- the run ----------------------------------------------------------------------------


@dataclass
class Plan:
    levels: tuple[int, ...]
    seconds: float
    peer_requests: int  # a peer stops at this many requests a level (fewer: see bench_server)
    warm: int  # warm-up requests (concurrency 2), untimed
    peer_warm: int
    overload_clients: int
    overload_s: float


QUICK = Plan((2,), 3, peer_requests=2, warm=4, peer_warm=2, overload_clients=16, overload_s=5)
FULL = Plan(LEVELS, 15, peer_requests=24, warm=16, peer_warm=4, overload_clients=16, overload_s=20)


def bench_server(t: Target, payloads: Payloads, plan: Plan, peer: bool) -> list[Row]:
    print(f"measuring {t.name} (ready in {t.start_s:.1f} s) ...", flush=True)
    warm = measure(t, payloads, 2, 600, plan.peer_warm if peer else plan.warm, drain_s=600)
    t.notes.append(
        f"warm-up, {warm.load.acked:,} spans at c=2 on a fresh store: "
        f"{warm.durable_rate:,.0f} durable spans/s, p99 {warm.pct(0.99):,.0f} ms"
    )
    rows = []
    for c in plan.levels:
        # a server that answers before it stores gets about as many spans as it stored in
        # `seconds` warm, at least one request a client: Phoenix acknowledges at once and
        # stores 20-150 spans/s here, so a level of 24 requests would take minutes to drain
        cap = None
        if t.acks_first:
            fit = warm.durable_rate * plan.seconds / BATCH if warm.stored else 0
            cap = max(c, min(plan.peer_requests, round(fit)))
        row = measure(t, payloads, c, plan.seconds, cap)
        print(f"  c={c}: {row.durable_rate:,.0f} durable spans/s", flush=True)
        if not row.drained:
            t.notes.append(
                f"c={c}: {row.load.acked - row.stored:,} acknowledged spans not stored "
                "(the store stopped growing)"
            )
        if row.load.errors or row.load.refused or cap is not None:
            t.notes.append(
                f"c={c}: {row.load.requests} requests, answers "
                f"{dict(sorted(row.load.statuses.items()))}, {row.load.errors} errors"
            )
        rows.append(row)
    return rows


def overload(t: Target, payloads: Payloads, plan: Plan) -> list[str]:
    c = plan.overload_clients
    print(f"overloading {t.name} with {c} clients for {plan.overload_s:g} s ...", flush=True)
    row = measure(t, payloads, c, plan.overload_s, None, drain_s=300)
    load = row.load
    return [
        f"Shipyard overload: {c} clients for {plan.overload_s:g} s, each retrying a 503 "
        "after its Retry-After:",
        f"  {load.requests:,} requests: {load.acked // BATCH:,} acknowledged, "
        f"{load.refused:,} answered 503 ({load.refused_retry_after:,} with Retry-After), "
        f"{load.errors:,} other errors",
        f"  acknowledged {row.acked_rate:,.0f} spans/s, durable {row.durable_rate:,.0f} "
        f"spans/s, p99 ack {row.pct(0.99):,.0f} ms, peak RSS {row.peak_rss:,.0f} MiB",
        f"  every acknowledged span stored: {'yes' if row.drained else 'NO'} "
        f"({row.stored:,} of {load.acked:,})",
    ]


def queries(spans: int) -> list[str]:
    """bench/trace_store.py's SQLite run at `spans` spans: two of its lines."""
    print(f"timing queries: bench/trace_store.py --spans {spans} --engines sqlite ...", flush=True)
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "trace_store.py")]
        + ["--spans", str(spans), "--engines", "sqlite"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return [f"bench/trace_store.py failed:\n{out.stderr[-1500:]}"]
    lines = [f"Queries on a SQLite trace store of {spans:,} spans (bench/trace_store.py):"]
    for line in out.stdout.splitlines():
        if re.match(r"(write:|trace list, two filters  |dashboard)", line):
            lines.append("  " + re.sub(r"\s{3,}", "   ", line))
    return lines


def fmt(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else "–"


def table(rows: list[Row]) -> list[str]:
    out = [
        "| server | c | acked spans/s | durable spans/s | CPU µs/span | p50 ack ms "
        "| p99 ack ms | peak RSS MiB | 503s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.server} | {r.concurrency} | {fmt(r.acked_rate, '{:,.0f}')} "
            f"| {fmt(r.durable_rate, '{:,.0f}')} | {fmt(r.cpu_us, '{:,.0f}')} "
            f"| {fmt(r.pct(0.5), '{:,.1f}')} | {fmt(r.pct(0.99), '{:,.1f}')} "
            f"| {fmt(r.peak_rss, '{:,.0f}')} | {r.load.refused:,} |"
        )
    return out


def ratios(rows: list[Row]) -> list[str]:
    ship = {r.concurrency: r for r in rows if r.server == "Shipyard"}
    peers = sorted({r.server for r in rows if r.server != "Shipyard"})
    if not ship or not peers:
        return []
    out = [
        "| Shipyard / peer | c | durable spans/s | acked spans/s | CPU µs/span | p99 ack "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in peers:
        for r in rows:
            s = ship.get(r.concurrency)
            if r.server != name or s is None:
                continue
            cells = [
                _ratio(s.durable_rate, r.durable_rate),
                _ratio(s.acked_rate, r.acked_rate),
                _ratio(s.cpu_us, r.cpu_us),
                _ratio(s.pct(0.99), r.pct(0.99)),
                _ratio(s.peak_rss, r.peak_rss),
            ]
            out.append(
                f"| Shipyard / {name.split()[0]} | {r.concurrency} | " + " | ".join(cells) + " |"
            )
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if math.isfinite(a) and math.isfinite(b) and b > 0 else "–"


def targets(rows: list[Row]) -> list[str]:
    ship = [r for r in rows if r.server == "Shipyard"]
    if not ship:
        return []
    best = max(ship, key=lambda r: r.durable_rate)
    checks = [
        ("durable spans/s >= 20,000", best.durable_rate, best.durable_rate >= 20_000, "{:,.0f}"),
        ("server CPU per span <= 100 µs", best.cpu_us, best.cpu_us <= 100, "{:,.0f} µs"),
        (
            "p99 batch acknowledgement <= 100 ms",
            max(r.pct(0.99) for r in ship),
            max(r.pct(0.99) for r in ship) <= 100,
            "{:,.1f} ms",
        ),
    ]
    out = [f"Shipyard's targets (best level c={best.concurrency}; p99 the worst level):"]
    for label, value, ok, spec in checks:
        out.append(f"  {label:38} {fmt(value, spec):>12}  {'pass' if ok else 'FAIL'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Tracing ingest benchmark (prints figures).")
    parser.add_argument("--quick", action="store_true", help="one level, short (a smoke run)")
    parser.add_argument("--no-peers", action="store_true", help="Shipyard only")
    parser.add_argument(
        "--spans",
        type=int,
        default=None,
        metavar="N",
        help="time queries at N stored spans via bench/trace_store.py (default 100,000; "
        "--quick: 0, skipped; the issue's target is at 1,000,000)",
    )
    parser.add_argument("--pin", action="store_true", help="servers on core 0, load on core 1")
    parser.add_argument(
        "--workers", type=int, default=1, help="Shipyard worker processes (>1 starts Redis)"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    spans = args.spans if args.spans is not None else (0 if args.quick else 100_000)
    began = time.monotonic()
    load_avg = os.getloadavg()
    if args.pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    print("building payloads ...", flush=True)
    payloads = Payloads()
    rows: list[Row] = []
    notes: list[str] = []
    extra: list[str] = []
    starters: list[Callable[[], Target | None]] = [lambda: start_shipyard(args.pin, args.workers)]
    if not args.no_peers:
        for name, start in (("MLflow", start_mlflow), ("Phoenix", start_phoenix)):

            def starter(name: str = name, start: Callable[..., Target] = start) -> Target | None:
                exe = ensure_peer(name)
                return start(exe, args.pin) if exe is not None else None

            starters.append(starter)
    try:
        for start in starters:
            t = start()
            if t is None:
                continue
            try:
                rows += bench_server(t, payloads, plan, peer=t.name != "Shipyard")
                if t.name == "Shipyard":
                    extra += overload(t, payloads, plan)
            finally:
                notes += [f"  {t.name}: {n}" for n in t.notes]
                t.close()
    finally:
        if args.pin:
            os.sched_setaffinity(0, {int(c) for c in ALL_CPUS.split(",")})
    if spans:
        extra += [""] + queries(spans)
    print()
    print(
        f"OTLP/HTTP protobuf, {BATCH} spans ({payloads.size / 1e3:,.0f} kB) a request; "
        f"{plan.seconds:g} s a level"
        + (
            ""
            if args.no_peers
            else " (Phoenix also stops at about what it stored in that time warm, at least "
            f"one request a client, at most {plan.peer_requests})"
        )
        + f"; load average at the start {load_avg[0]:.2f}, {os.cpu_count()} cores"
        + ("; servers pinned to core 0" if args.pin else "; nothing pinned")
    )
    print("\n".join(table(rows)))
    rat = ratios(rows)
    if rat:
        print()
        print("Ratios: above 1 is more for Shipyard (better for spans/s, worse for the rest).")
        print("\n".join(rat))
    print("\n".join(notes))
    print()
    print("\n".join(extra))
    print()
    print("\n".join(targets(rows)))
    print(
        f"\n(benchmark took {time.monotonic() - began:.0f} s; load average now "
        f"{os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
