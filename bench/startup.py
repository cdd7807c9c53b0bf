"""Startup benchmark: time from `shipyard up` to /readyz == 200, and RSS once idle.

    .venv/bin/python bench/startup.py [--runs 5]

Targets (issue #2): ready in <= 2 s, idle RSS <= 150 MB. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def one_run(home: Path) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "SHIPYARD_HOME": str(home)}
    shipyard = Path(sys.executable).with_name("shipyard")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(shipyard), "up", "--port", str(port)],
        env=env,
        cwd=home.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ready(port):
            if proc.poll() is not None:
                raise SystemExit("shipyard up exited early")
            if time.perf_counter() - start > 60:
                raise SystemExit("not ready after 60 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)  # idle
        return elapsed, rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    first_ready, first_rss, warm_ready, warm_rss = [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            t, r = one_run(home)  # first start: migrations + bootstrap
            first_ready.append(t)
            first_rss.append(r)
            t, r = one_run(home)  # later start: database already there
            warm_ready.append(t)
            warm_rss.append(r)
    med = statistics.median
    print(f"shipyard up -> /readyz 200, median of {args.runs} runs (target <= 2.0 s, <= 150 MiB)")
    print(
        f"  first start (migrate + bootstrap): {med(first_ready):.2f} s   "
        f"idle RSS {med(first_rss):.0f} MiB   (max {max(first_ready):.2f} s)"
    )
    print(
        f"  later start:                       {med(warm_ready):.2f} s   "
        f"idle RSS {med(warm_rss):.0f} MiB   (max {max(warm_ready):.2f} s)"
    )


if __name__ == "__main__":
    main()
