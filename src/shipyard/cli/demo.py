"""`shipyard demo closed-loop`: the whole loop, offline, on a task a 135M model learns in
minutes on a CPU (support e-mails in, a fixed JSON shape out; `shipyard.training.tasks`).

It starts its own server (embedded defaults, a temporary data directory; local models
on llama-server when it is built), then:

 1. registers the base as version 1 of the model `smollm2-support` and promotes it to
    production (four eyes: a second person, the demo's reviewer, approves); the route
    `support` serves `smollm2-support@production`;
 2. sends the training e-mails to `support` as live traffic (each call traced), and a
    reviewer corrects every answer (feedback with a correction on its trace);
 3. makes a dataset version of those traces (their corrections as the expected
    answers), exports it as OpenAI chat examples and uploads it (`/v1/files`, purpose
    fine-tune), with the held-out e-mails as the validation file;
 4. fine-tunes SmolLM2 with LoRA (`/v1/fine_tuning/jobs`), which registers version 2 and
    evaluates it against the base on the held-out e-mails (exact match, 95% intervals);
 5. if it is better with significance, requests its promotion to staging (approved by
    the reviewer) and starts a canary on `support`: live calls (the held-out e-mails),
    scored by an online evaluation rule (the answer's JSON shape), judged by the
    platform, which promotes it;
 6. forces a rollback: version 3, the base cut to 4 output tokens (broken JSON), tried
    the same way; its online score drops and the platform rolls it back on its own.

Everything it does goes through the API a user would call, and prints as it goes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="End-to-end demonstrations, offline.", no_args_is_help=True)
console = Console()
PASSWORD = "Demo-Passphrase-2026!"
ADMIN = "admin@example.com"
REVIEWER = "reviewer@example.com"
MODEL = "smollm2-support"
RULE = "online"  # the online evaluation rule on 'support'
DATASET = "support-corrections"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(home: Path, threads: int, logfile: Path) -> Iterator[httpx.Client]:
    from shipyard.gateway.providers.llama_server import binary

    port = _free_port()
    env = {**os.environ, "SHIPYARD_HOME": str(home), "SHIPYARD_LOG_LEVEL": "warning",
           "SHIPYARD_ADMIN_EMAIL": ADMIN, "SHIPYARD_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    if threads:
        env["SHIPYARD_TRAINING_THREADS"] = str(threads)
    if binary() is not None and "SHIPYARD_LOCAL_ENGINE" not in env:
        env["SHIPYARD_LOCAL_ENGINE"] = "server"  # continuous batching: 4 calls at once
    log = open(logfile, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "up", "--port", str(port)],
        env=env, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {logfile}")
            time.sleep(0.5)
        key = orjson.loads((home / "credentials.json").read_bytes())["api_key"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=600) as client:  # fmt: skip
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _ok(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise SystemExit(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return r.json() if r.content else None


def _reviewer(c: httpx.Client) -> httpx.Client:
    """The second person: an admin who logs in through the web form (approvals need a
    person, not a key)."""
    _ok(c.post("/api/users", json={"email": REVIEWER, "password": PASSWORD, "role": "admin"}))
    person = httpx.Client(base_url=str(c.base_url), timeout=60)
    page = person.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    person.post("/login", data={"email": REVIEWER, "password": PASSWORD, "csrf_token": token})
    shell = person.get("/", headers={"accept": "text/html"})
    person.headers["x-csrf-token"] = shell.text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
    return person


def _promote(c: httpx.Client, reviewer: httpx.Client, version: int, environment: str) -> None:
    asked = _ok(c.post("/api/registry/promotions", json={
        "name": MODEL, "version": version, "environment": environment,
        "note": "closed-loop demo"}))  # fmt: skip
    if asked["state"] == "pending":
        _ok(reviewer.post(f"/api/registry/promotions/{asked['id']}/approve",
                          json={"note": "looked at the evaluation"}))  # fmt: skip
        console.print(f"   {MODEL} v{version} → {environment}: requested, approved by {REVIEWER}")
    else:
        console.print(f"   {MODEL} v{version} → {environment}: {asked['state']}")


def _upload(c: httpx.Client, name: str, rows: list[dict[str, Any]]) -> str:
    data = b"\n".join(orjson.dumps(r) for r in rows)
    files = {"file": (name, data, "application/jsonl")}
    return str(_ok(c.post("/v1/files", files=files, data={"purpose": "fine-tune"}))["id"])


def _score(run: dict[str, Any]) -> dict[str, Any]:
    return dict(run["aggregates"]["scores"]["exact_match"])


def _wait_run(c: httpx.Client, run_id: str) -> dict[str, Any]:
    while (run := _ok(c.get(f"/api/evals/runs/{run_id}")))["status"] in ("queued", "running"):
        time.sleep(1)
    return dict(run)


def _canary(
    c: httpx.Client, version: int, held: list[dict[str, Any]], percent: float,
    max_tokens: int | None,
) -> tuple[dict[str, Any], dict[str, list[int]]]:  # fmt: skip
    """A canary of `version` on `support`; live calls, each reply scored by the online
    evaluation rule `online` (feedback `online/json_schema` on its trace); the demo
    also counts exact matches itself, to show them."""
    from shipyard.training.tasks import exact

    canary = _ok(c.post("/api/serving/canaries", json={
        "route": "support", "model": MODEL, "version": version, "stable_alias": "production",
        "percent": percent, "metric": f"{RULE}/json_schema", "margin": 0.1,
        "min_samples": max(5, len(held) // 8), "promote_after_seconds": 0}))  # fmt: skip
    arms: dict[str, list[int]] = {}
    with Progress(TextColumn("   live calls"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("calls", total=len(held))
        for row in held:
            body: dict[str, Any] = {"model": "support", "messages": row["messages"][:2],
                                    "temperature": 0}  # fmt: skip
            if max_tokens:
                body["max_tokens"] = max_tokens
            r = c.post("/v1/chat/completions", json=body)
            reply = _ok(r)["choices"][0]["message"]["content"] or ""
            right = exact(reply, row["messages"][2]["content"])
            arms.setdefault(_ok(r)["model"], []).append(int(right))
            bar.advance(task)
    time.sleep(2)  # the traces stored, the rule scores them now rather than in a minute
    scored = _ok(c.post(f"/api/evals/online/{RULE}/run"))
    console.print(f"   online evaluation rule '{RULE}' run now: {scored['scored']} live calls "
                  "scored (the others by its run every minute)")  # fmt: skip
    return canary, arms


@app.command("closed-loop")
def closed_loop(
    train: Annotated[int, typer.Option(help="Training e-mails.")] = 200,
    held_out: Annotated[int, typer.Option(help="Held-out e-mails.")] = 100,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 2,
    threads: Annotated[int, typer.Option(help="Training threads (0: cores - 1).")] = 0,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Keep the demo's data here (an empty folder) to look at the "
            "loop in the UI afterwards; default: a temporary folder, removed."
        ),
    ] = None,  # fmt: skip
) -> None:
    """Fine-tune, evaluate, approve, canary and roll back, offline, on this machine."""
    console.print("[bold]Shipyard closed loop[/bold]: feedback → dataset → LoRA → evaluation "
                  "→ approval → canary → rollback")  # fmt: skip
    if home is not None and home.exists() and any(home.iterdir()):
        console.print(f"[red]--home: {home} is not empty[/red]")
        raise typer.Exit(2)
    raise typer.Exit(_run(train, held_out, epochs, threads, home))


def _run(train: int, held_out: int, epochs: int, threads: int, home: Path | None = None) -> int:
    from shipyard.training.tasks import emails

    work = Path(tempfile.mkdtemp(prefix="shipyard-demo-"))
    try:
        with _server(home or work / "home", threads, work / "server.log") as c:
            code = _loop(c, emails(train, seed=1), emails(held_out, seed=2), epochs)
        if home is not None:
            console.print(f"The loop in the UI: [bold]SHIPYARD_HOME={home} shipyard up[/bold], "
                          f"then /serving/models/{MODEL} (login {ADMIN}, "
                          f"password {PASSWORD})")  # fmt: skip
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _loop(c: httpx.Client, rows: list[dict[str, Any]], held: list[dict[str, Any]],
          epochs: int) -> int:  # fmt: skip
    from shipyard.training.tasks import SCHEMA

    console.print("1. baseline: the base model as production, behind the route 'support'")
    reviewer = _reviewer(c)
    _ok(c.post("/api/registry/models", json={"name": MODEL}))
    _ok(
        c.post(
            f"/api/registry/models/{MODEL}/versions",
            json={"source": {"kind": "route", "route": "smollm2"}, "message": "the base"},
        )
    )
    _promote(c, reviewer, 1, "production")
    _ok(c.put("/api/gateway/routes/support", json={"name": "support", "target": {
        "kind": "registry", "refs": [{"ref": f"{MODEL}@production"}]}}))  # fmt: skip
    _ok(c.post("/api/evals/online", json={
        "name": RULE, "route": "support", "sample_rate": 1.0, "interval_s": 60,
        "scorers": [{"name": "json_schema", "config": {"schema": SCHEMA}}]}))  # fmt: skip

    console.print(f"2. traffic: {len(rows)} support e-mails answered by production, each "
                  "traced; a reviewer corrects the answers")  # fmt: skip
    traces, right = _traffic(c, reviewer, rows)
    console.print(f"   {right}/{len(rows)} answers were right; {len(rows) - right} corrected")

    console.print(f"3. dataset: '{DATASET}' from those traces (corrections as the expected "
                  "answers), exported as chat examples")  # fmt: skip
    train_id = _from_traces(c, traces)
    held_id = _upload(c, "held-out.jsonl", held)
    console.print(f"   training file {train_id}; {len(held)} held-out e-mails {held_id}")

    console.print("4. fine-tuning SmolLM2-135M with LoRA on the dataset")
    job = _ok(c.post("/v1/fine_tuning/jobs", json={
        "model": "smollm2", "training_file": train_id, "validation_file": held_id,
        "suffix": "support",
        "hyperparameters": {"n_epochs": epochs, "batch_size": 8}}))  # fmt: skip
    with Progress(TextColumn("   {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("queued", total=None)
        while (job := _ok(c.get(f"/v1/fine_tuning/jobs/{job['id']}")))["status"] in (
            "queued", "running"):  # fmt: skip
            bar.update(task, description=job["status"], completed=job["step"],
                       total=job["total_steps"] or None)  # fmt: skip
            time.sleep(2)
    if job["status"] != "succeeded":
        console.print(f"[red]   the job {job['status']}: {job['error']}[/red]")
        return 1
    console.print(f"   {job['id']} made [bold]{job['fine_tuned_model']}[/bold] "
                  f"({job['trained_tokens']:,} tokens)")  # fmt: skip

    console.print("5. validation before deploy: fine-tuned against base, held-out, exact match")
    said = None
    while said is None:
        events = _ok(c.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 20}))
        said = next((e for e in events["data"] if e["message"].startswith("Validation")), None)
        time.sleep(1)
    ran = {arm: _wait_run(c, said["data"][arm]) for arm in ("base", "fine_tuned")}
    scores = {arm: _score(run) for arm, run in ran.items()}
    t = Table()
    for col in ("model", "exact match", "95% interval", "n"):
        t.add_column(col)
    for arm, s in scores.items():
        t.add_row(ran[arm]["target"]["ref"], f"{s['mean']:.2f}",
                  f"{s['ci_low']:.2f} – {s['ci_high']:.2f}", str(s["n"]))  # fmt: skip
    console.print(t)
    if not scores["fine_tuned"]["ci_low"] > scores["base"]["ci_high"]:
        console.print("[yellow]   not better with significance: stopping here[/yellow]")
        return 1

    console.print("6. promotion: better with significance; v2 to staging (its policy decides)")
    _promote(c, reviewer, 2, "staging")
    console.print(f"7. canary: v2 on half of 'support', scored online by the rule '{RULE}'")
    _judged(c, *_canary(c, 2, held, 50, 64), expect="promoted")
    _promote(c, reviewer, 2, "production")  # the environment follows, through its gates
    _ok(c.put("/api/gateway/routes/support", json={"name": "support", "target": {
        "kind": "registry", "refs": [{"ref": f"{MODEL}@production"}]}}))  # fmt: skip

    console.print("8. a forced rollback: v3 is the base cut to 4 output tokens (broken JSON)")
    _ok(c.post(f"/api/registry/models/{MODEL}/versions", json={
        "source": {"kind": "route", "route": "smollm2"}, "params": {"max_tokens": 4},
        "message": "cut short"}))  # fmt: skip
    _judged(c, *_canary(c, 3, held, 50, None), expect="rolled_back")
    console.print("[green]done[/green]: trained, evaluated, approved, canaried, rolled back")
    return 0


def _traffic(
    c: httpx.Client, reviewer: httpx.Client, rows: list[dict[str, Any]]
) -> tuple[list[str], int]:
    """Each e-mail through `support` (four at once); the reviewer's correction on each
    trace whose answer was wrong, a thumbs up on the others."""
    from concurrent.futures import ThreadPoolExecutor

    from shipyard.training.tasks import exact

    def one(row: dict[str, Any]) -> tuple[str, bool]:
        r = c.post("/v1/chat/completions", json={
            "model": "support", "messages": row["messages"][:2], "temperature": 0,
            "max_tokens": 64})  # fmt: skip
        trace = r.headers["x-shipyard-trace-id"]
        answer = row["messages"][2]["content"]
        right = exact(_ok(r)["choices"][0]["message"]["content"] or "", answer)
        verdict: dict[str, Any] = {"thumbs": "up"} if right else {"correction": answer}
        _ok(reviewer.post("/api/feedback", json={"trace_id": trace, **verdict}))
        return trace, right

    with Progress(TextColumn("   calls"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar, \
            ThreadPoolExecutor(4) as pool:  # fmt: skip
        task = bar.add_task("calls", total=len(rows))
        done = []
        for got in pool.map(one, rows):
            done.append(got)
            bar.advance(task)
    return [t for t, _ in done], sum(r for _, r in done)


def _from_traces(c: httpx.Client, traces: list[str]) -> str:
    """A dataset version of the traces (waiting for the last ones to be stored), its
    OpenAI chat export uploaded as a fine-tuning file."""
    _ok(c.post("/api/datasets", json={"name": DATASET,
                                      "description": "support e-mails, as corrected"}))  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        r = c.post(f"/api/datasets/{DATASET}/from-traces", json={"trace_ids": traces})
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    version = _ok(r)
    export = c.get(
        f"/api/datasets/{DATASET}/export",
        params={"format": "openai", "version": version["version"]},
    )
    if export.status_code != 200:
        _ok(export)
    console.print(f"   {DATASET} v{version['version']}: {version['added']} items from traces")
    # the export's own file name: the fine-tune's lineage links the dataset version
    name = f"{DATASET}-v{version['version']}-openai.jsonl"
    files = {"file": (name, export.content, "application/jsonl")}
    return str(_ok(c.post("/v1/files", files=files, data={"purpose": "fine-tune"}))["id"])


def _judged(c: httpx.Client, canary: dict[str, Any], arms: dict[str, list[int]],
            *, expect: str) -> None:  # fmt: skip
    for model, got in arms.items():
        console.print(f"   {model}: {sum(got)}/{len(got)} exact (counted by the demo)")
    deadline = time.monotonic() + 120
    while (row := _ok(c.post(f"/api/serving/canaries/{canary['id']}/judge")))["status"] == (
        "running") and time.monotonic() < deadline:  # fmt: skip
        time.sleep(2)
    d = row["decision"] or {}
    style = "green" if row["status"] == expect else "red"
    console.print(f"   canary {row['id']}: [{style}]{row['status']}[/{style}] ({d.get('reason')})")
