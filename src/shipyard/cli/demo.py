"""`shipyard demo closed-loop`: the whole loop, offline, on a task a 135M model learns in
minutes on a CPU (support e-mails in, a fixed JSON shape out; `shipyard.training.tasks`).

It starts its own server (embedded defaults, a temporary data directory), then:

 1. uploads generated training and held-out e-mails (`/v1/files`, purpose fine-tune);
 2. registers the base as version 1 of the model `smollm2-support` and promotes it to
    production (four eyes: a second person, the demo's reviewer, approves); the route
    `support` serves `smollm2-support@production`;
 3. fine-tunes SmolLM2 with LoRA (`/v1/fine_tuning/jobs`), which registers version 2 and
    evaluates it against the base on the held-out e-mails (exact match, 95% intervals);
 4. if it is better with significance, requests its promotion to staging (approved by
    the reviewer) and starts a canary on `support`: live calls (the held-out e-mails),
    scored online by exact match as feedback, judged by the platform, which promotes it;
 5. forces a rollback: version 3, the base cut to 4 output tokens (broken JSON), tried
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
REVIEWER = "reviewer@example.com"
MODEL = "smollm2-support"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(home: Path, threads: int) -> Iterator[httpx.Client]:
    port = _free_port()
    env = {**os.environ, "SHIPYARD_HOME": str(home), "SHIPYARD_LOG_LEVEL": "warning",
           "SHIPYARD_ADMIN_PASSWORD": PASSWORD}  # fmt: skip
    if threads:
        env["SHIPYARD_TRAINING_THREADS"] = str(threads)
    log = open(home.parent / "server.log", "wb")  # noqa: SIM115 - closed below
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
                raise SystemExit(f"the server did not start; see {home.parent / 'server.log'}")
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
    """A canary of `version` on `support`; live calls, each reply scored online by exact
    match (feedback `online/exact_match` on its trace, as an online evaluation rule
    writes it)."""
    from shipyard.training.tasks import exact

    canary = _ok(c.post("/api/serving/canaries", json={
        "route": "support", "model": MODEL, "version": version, "stable_alias": "production",
        "percent": percent, "metric": "online/exact_match", "margin": 0.1,
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
            score = 1.0 if exact(reply, row["messages"][2]["content"]) else 0.0
            arms.setdefault(_ok(r)["model"], []).append(int(score))
            _ok(c.post("/api/feedback", json={
                "trace_id": r.headers["x-shipyard-trace-id"], "name": "online/exact_match",
                "score": score, "source": "api"}))  # fmt: skip
            bar.advance(task)
    return canary, arms


@app.command("closed-loop")
def closed_loop(
    train: Annotated[int, typer.Option(help="Training e-mails.")] = 200,
    held_out: Annotated[int, typer.Option(help="Held-out e-mails.")] = 100,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 2,
    threads: Annotated[int, typer.Option(help="Training threads (0: cores - 1).")] = 0,
) -> None:
    """Fine-tune, evaluate, approve, canary and roll back, offline, on this machine."""
    console.print("[bold]Shipyard closed loop[/bold]: feedback → dataset → LoRA → evaluation "
                  "→ approval → canary → rollback")  # fmt: skip
    raise typer.Exit(_run(train, held_out, epochs, threads))


def _run(train: int, held_out: int, epochs: int, threads: int) -> int:
    from shipyard.training.tasks import emails

    work = Path(tempfile.mkdtemp(prefix="shipyard-demo-"))
    try:
        with _server(work / "home", threads) as c:
            return _loop(c, emails(train, seed=1), emails(held_out, seed=2), epochs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _loop(c: httpx.Client, rows: list[dict[str, Any]], held: list[dict[str, Any]],
          epochs: int) -> int:  # fmt: skip
    console.print(f"1. data: {len(rows)} training and {len(held)} held-out support e-mails")
    train_id, held_id = _upload(c, "train.jsonl", rows), _upload(c, "held-out.jsonl", held)

    console.print("2. baseline: the base model as production, behind the route 'support'")
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

    console.print("3. fine-tuning SmolLM2-135M with LoRA on the training e-mails")
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

    console.print("4. validation before deploy: fine-tuned against base, held-out, exact match")
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

    console.print("5. promotion: better with significance; v2 to staging (its policy decides)")
    _promote(c, reviewer, 2, "staging")
    console.print("6. canary: v2 on half of 'support', scored online by exact match")
    _judged(c, *_canary(c, 2, held, 50, 64), expect="promoted")
    _promote(c, reviewer, 2, "production")  # the environment follows, through its gates
    _ok(c.put("/api/gateway/routes/support", json={"name": "support", "target": {
        "kind": "registry", "refs": [{"ref": f"{MODEL}@production"}]}}))  # fmt: skip

    console.print("7. a forced rollback: v3 is the base cut to 4 output tokens (broken JSON)")
    _ok(c.post(f"/api/registry/models/{MODEL}/versions", json={
        "source": {"kind": "route", "route": "smollm2"}, "params": {"max_tokens": 4},
        "message": "cut short"}))  # fmt: skip
    _judged(c, *_canary(c, 3, held, 50, None), expect="rolled_back")
    console.print("[green]done[/green]: trained, evaluated, approved, canaried, rolled back")
    return 0


def _judged(c: httpx.Client, canary: dict[str, Any], arms: dict[str, list[int]],
            *, expect: str) -> None:  # fmt: skip
    for model, got in arms.items():
        console.print(f"   {model}: {sum(got)}/{len(got)} exact")
    deadline = time.monotonic() + 120
    while (row := _ok(c.post(f"/api/serving/canaries/{canary['id']}/judge")))["status"] == (
        "running") and time.monotonic() < deadline:  # fmt: skip
        time.sleep(2)
    d = row["decision"] or {}
    style = "green" if row["status"] == expect else "red"
    console.print(f"   canary {row['id']}: [{style}]{row['status']}[/{style}] ({d.get('reason')})")
