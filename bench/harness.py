"""What the gateway benchmark is built from: processes, load from `wrk`, the measurement
plan, and a `Server` under test with its rounds. Used by bench/gateway.py."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers" / "litellm-proxy-1.110.2.txt"
PEER_VENV = ROOT / ".bench" / "peer-litellm"
SERVER_CPU, LOAD_CPU = "0", "1"
ALL_CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
BODY = '{"model":"bench","messages":[{"role":"user","content":"ping"}],"max_tokens":16}'
FLOOR_TOKEN = "sk-floor-bench"
MB = 1e6

# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@contextlib.contextmanager
def shipyard_up(work: Path) -> Iterator[httpx.Client]:
    """`shipyard up` with its embedded defaults under `work/home` (its log in
    `work/server.log`), and a client authorized as the bootstrap owner; stopped after."""
    import orjson

    python = ROOT / ".venv" / "bin" / "python"
    exe = str(python if python.exists() else sys.executable)
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(work / "home"),
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_ADMIN_PASSWORD": "Bench-Passphrase-2026",
    }
    with (work / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [exe, "-m", "shipyard.cli", "up", "--port", str(port)],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/readyz", timeout=120)
            key = orjson.loads((work / "home" / "credentials.json").read_bytes())["api_key"]
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
                yield client
        finally:
            stop(proc, 60)


def minilm_rate(texts: list[str], batch: int = 128) -> float:
    """The floor of embedding work: bare sentence-transformers (the built-in MiniLM)
    encoding `texts` in calls of `batch`, as texts per second."""
    from sentence_transformers import SentenceTransformer

    from shipyard.gateway.config.builtins import _minilm_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformer(str(_minilm_path()), device="cpu")
    model.encode(texts[:64])
    t = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.encode(texts[start : start + batch], normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - t)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn workers, model worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree (reaped children included)."""
    ticks = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total / MB


class PeakRss:
    """Samples the process tree's RSS every 50 ms while load runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, tree_rss_mb(self.pid))


def stop(proc: subprocess.Popen[bytes], timeout: float = 60, sig: int = signal.SIGINT) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- load -------------------------------------------------------------------------------


@dataclass
class WrkResult:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float = math.nan  # server CPU per request during the run


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def start_redis(home: Path, cpus: str = LOAD_CPU) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's redis-server on a Unix socket (scripts/setup.sh --test installs it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--workers needs redis-server (scripts/setup.sh --test installs it)")
    sock = home / "redis.sock"
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, exe, "--port", "0", "--unixsocket", str(sock)]
        + ["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(home)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            stop(proc, 5, signal.SIGTERM)
            raise SystemExit("redis-server did not start")
        time.sleep(0.02)
    return proc, f"unix://{sock}"


def wrk(url: str, auth: str, connections: int, seconds: float, body: str = BODY) -> WrkResult:
    fd, name = tempfile.mkstemp(suffix=".lua")
    os.close(fd)
    script = Path(name)
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {auth}"\n'
    )
    try:
        out = subprocess.run(
            ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s"]
            + ["--timeout", "10s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink()

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNIT[m.group(2)] if m else math.nan

    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rps is None:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return WrkResult(
        connections, int(requests.group(1)), float(rps.group(1)), pct("50"), pct("99"), errors
    )


@dataclass
class Plan:
    rounds: int
    latency_s: float
    step_s: float
    sweep: tuple[int, ...]
    warm_requests: int  # before the first round
    long_run: bool  # after the rounds, load on until a server's `long_run` requests


QUICK = Plan(2, latency_s=3, step_s=2, sweep=(4, 16, 32, 64), warm_requests=0, long_run=False)
FULL = Plan(
    3, latency_s=10, step_s=5, sweep=(2, 4, 8, 16, 32, 64), warm_requests=10_000, long_run=True
)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    auth: str
    start_s: float = math.nan
    long_run: int = 200_000
    served: int = 0
    errors: int = 0
    idle_rss: float = math.nan
    warm_rss: float = math.nan
    warm_served: int = 0
    end_rss: float = math.nan
    latency: list[WrkResult] = field(default_factory=list)
    sweeps: list[list[WrkResult]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rss: PeakRss | None = None
    close: Callable[[], None] | None = None
    finish: Callable[[], None] | None = None  # after the load, before close (read metrics)
    body: str = BODY  # what each request sends (its `model` names the route)
    admin: str = ""  # a key that may configure the server, where there is one

    @property
    def pid(self) -> int:
        return self.proc.pid

    def load(self, connections: int, seconds: float) -> WrkResult:
        if self.rss is None:
            self.rss = PeakRss(self.pid)
        before = tree_cpu_seconds(self.pid)
        with self.rss.sampling():
            r = wrk(self.url, self.auth, connections, seconds, self.body)
        r.cpu_ms = (tree_cpu_seconds(self.pid) - before) / max(1, r.requests) * 1000
        self.served += r.requests
        self.errors += r.errors
        return r


def settle(servers: list[Server], timeout: float = 3.0) -> None:
    """Wait until no server burns CPU (a record writer flushing, say) before the next one."""
    deadline = time.monotonic() + timeout
    last = [tree_cpu_seconds(s.pid) for s in servers]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = [tree_cpu_seconds(s.pid) for s in servers]
        if all(n - b < 0.011 for n, b in zip(now, last, strict=True)):
            return
        last = now


def warm_up(server: Server, plan: Plan) -> None:
    server.idle_rss = tree_rss_mb(server.pid)
    server.load(8, 2)
    while server.served < plan.warm_requests:
        server.load(8, 2)
    server.warm_rss, server.warm_served = tree_rss_mb(server.pid), server.served


def one_round(server: Server, plan: Plan) -> None:
    server.load(4, 1)  # untimed: the first requests after idle cost more
    server.latency.append(server.load(1, plan.latency_s))
    server.sweeps.append([server.load(c, plan.step_s) for c in plan.sweep])


def long_run(server: Server) -> None:
    conns = best_connections(server)
    while server.served < server.long_run:
        server.load(conns, 10)


def best_connections(server: Server) -> int:
    ok = [r for sweep in server.sweeps for r in sweep if r.p99_ms <= 10.0]
    return max(ok, key=lambda r: r.rps).connections if ok else 8
