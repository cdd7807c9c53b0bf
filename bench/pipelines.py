"""Pipeline overhead: what running a spec adds over its steps' own time. Prints
figures; asserts nothing.

A real server (`shipyard up`, embedded defaults) with a route on the fast fake upstream
(bench/fake_upstream.py). Two pipelines, each invoked `--n` times in turn from one
client (after a warm-up):

- `chain`: `--steps` output steps, each reading the one before (no work of their own:
  what is left is the engine: references, records, spans);
- `rag`: prompt (a registry prompt) -> model (the route) -> output.

For each, from the server's own accounting in the reply: (invocation time - the sum of
the steps' own time) / steps, p50 and p99 (target: <= 1 ms per step). End to end, the
`rag` pipeline's p50 beside the floor measured in the same run: the same prompt
rendered and the same route called directly through `/v1/chat/completions` with
`prompt` and `variables` (one gateway call, no pipeline); the difference per step, for
the pipeline invoked through `/api/pipelines/rag/invoke` (FastAPI, a reply with every
step's record) and as the model `pipeline:rag` on `/v1/chat/completions` (the floor's
own path).

    .venv/bin/python bench/pipelines.py --n 300 --steps 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import free_port, shipyard_up, stop  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipyard-pipe-bench-"))
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), str(up_port)]
    )
    try:
        with shipyard_up(work) as c:
            setup(c, up_port, args.steps)
            run(c, args)
    finally:
        stop(upstream, 10, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


def setup(c: httpx.Client, up_port: int, steps: int) -> None:
    c.post(
        "/api/gateway/providers",
        json={
            "name": "fake",
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{up_port}/v1",
            "api_key": "sk-fake",
            "allow_internal": True,  # the fake upstream is on loopback
        },
    ).raise_for_status()
    c.put(
        "/api/gateway/routes/bench",
        json={"name": "bench", "retries": 0,
              "deployments": [{"provider": "fake", "model": "gpt-4o-mini"}]},
    ).raise_for_status()  # fmt: skip
    c.post(
        "/api/registry/prompts/bench-prompt/versions",
        json={
            "template": {"type": "chat", "messages": [
                {"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "{{ question }}"}]},
            "model": "bench",
        },
    ).raise_for_status()  # fmt: skip
    chain: list[dict[str, Any]] = [{"id": "s0", "type": "output", "value": "$inputs.question"}]
    for i in range(1, steps):
        chain.append({"id": f"s{i}", "type": "output", "value": f"$steps.s{i - 1}"})
    c.post(
        "/api/pipelines/chain/versions",
        json={"spec": {"inputs": {"question": {"type": "string"}}, "steps": chain}},
    ).raise_for_status()
    rag = {
        "inputs": {"question": {"type": "string"}},
        "steps": [
            {"id": "prompt", "type": "prompt", "prompt": "bench-prompt",
             "variables": {"question": "$inputs.question"}},
            {"id": "answer", "type": "model", "messages": "$steps.prompt"},
            {"id": "out", "type": "output", "value": {"answer": "$steps.answer"}},
        ],
    }  # fmt: skip
    c.post("/api/pipelines/rag/versions", json={"spec": rag}).raise_for_status()


def invoke(c: httpx.Client, name: str, question: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = c.post(f"/api/pipelines/{name}/invoke", json={"inputs": {"question": question}})
    wall = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return wall, r.json()


def direct(c: httpx.Client, question: str) -> float:
    t = time.perf_counter()
    r = c.post(
        "/v1/chat/completions",
        json={"prompt": "bench-prompt", "variables": {"question": question}},
    )
    wall = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return wall


def as_model(c: httpx.Client, question: str) -> float:
    """The `rag` pipeline as a model on /v1/chat/completions: the floor's own path."""
    t = time.perf_counter()
    r = c.post(
        "/v1/chat/completions",
        json={"model": "pipeline:rag", "messages": [{"role": "user", "content": question}]},
    )
    wall = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return wall


def overhead(body: dict[str, Any]) -> float:
    """ms the engine added per step: the invocation's time less its leaf steps' own."""
    steps = body["steps"]
    own = sum(s["own_ms"] for s in steps)
    return (body["ms"] - own) / max(1, len(steps))


def run(c: httpx.Client, args: argparse.Namespace) -> None:
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
    for _ in range(30):  # warm-up: compiled versions, pooled connections, JIT-free paths
        invoke(c, "chain", "warm")
        invoke(c, "rag", "warm")
        direct(c, "warm")
        as_model(c, "warm")
    chain_o, rag_o, rag_wall, floor_wall, chain_wall, model_wall = [], [], [], [], [], []
    for i in range(args.n):  # interleaved, so drift hits all three alike
        wall, body = invoke(c, "chain", f"question {i}")
        chain_wall.append(wall)
        chain_o.append(overhead(body))
        wall, body = invoke(c, "rag", f"question {i}")
        rag_wall.append(wall)
        rag_o.append(overhead(body))
        floor_wall.append(direct(c, f"question {i}"))
        model_wall.append(as_model(c, f"question {i}"))
    print(f"\n{args.n} invocations each, one client, interleaved\n")
    print("| pipeline | steps | engine overhead per step p50 / p99 | invoke wall p50 / p99 |")
    print("|---|---|---|---|")
    print(f"| chain (output steps) | {args.steps} | {statistics.median(chain_o):.3f} / "
          f"{pct(chain_o, 0.99):.3f} ms | {statistics.median(chain_wall):.2f} / "
          f"{pct(chain_wall, 0.99):.2f} ms |")  # fmt: skip
    print(f"| rag (prompt, model, output) | 3 | {statistics.median(rag_o):.3f} / "
          f"{pct(rag_o, 0.99):.3f} ms | {statistics.median(rag_wall):.2f} / "
          f"{pct(rag_wall, 0.99):.2f} ms |")  # fmt: skip
    floor, rag = statistics.median(floor_wall), statistics.median(rag_wall)
    extra = (rag - floor) / 3
    print(
        f"\nfloor (the same prompt and route in one /v1/chat/completions call): p50 "
        f"{floor:.2f} ms; rag pipeline p50 {rag:.2f} ms = {rag / floor:.2f}x the floor, "
        f"{extra:.3f} ms more per step"
    )
    served = statistics.median(model_wall)
    print(
        f"the same pipeline as `pipeline:rag` on /v1/chat/completions (the floor's path): p50 "
        f"{served:.2f} ms = {served / floor:.2f}x the floor, {(served - floor) / 3:.3f} ms more "
        "per step"
    )
    worst = max(statistics.median(chain_o), statistics.median(rag_o))
    print(f"target <= 1 ms per step: worst p50 {worst:.3f} ms = {worst / 1.0:.2f}x the target")


if __name__ == "__main__":
    main()
