"""`shipyard eval ...` and `shipyard datasets ...`: evaluation runs (with a progress bar
while the server's worker executes them), comparisons, and versioned datasets.

    shipyard datasets upload capitals qa.csv --create
    shipyard datasets export capitals --format openai -o train.jsonl
    shipyard eval run --target route:support --dataset capitals --scorer exact_match \\
        --scorer bleu --config bleu='{"lowercase": true}'
    shipyard eval compare run_a run_b"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, err, fail, write_out
from shipyard.evaluation.schemas import RunPublic
from shipyard.sdk.evaluation import scorers_of, target_of

app = typer.Typer(help="Evaluation runs and comparisons.", no_args_is_help=True)
datasets_app = typer.Typer(help="Versioned datasets.", no_args_is_help=True)


def _json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _configs(pairs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            fail(f"--config {pair!r}: give scorer=JSON, e.g. bleu='{{\"lowercase\": true}}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"--config {name}: not JSON ({exc.msg})")
        if not isinstance(value, dict):
            fail(f"--config {name}: give a JSON object")
        out[name] = value
    return out


def print_run(run: RunPublic) -> None:
    console.print(
        Text(f"{run.id}  {run.name}  ")
        + Text(run.status, style="green" if run.status == "completed" else "yellow")
        + Text(f"  {run.done}/{run.total} items, {run.errors} errors")
    )
    if run.error:
        console.print(Text(f"error: {run.error}", style="red"))
    agg = run.aggregates
    if not agg:
        return
    t = Table(title=f"{run.target.get('kind')}:{run.target.get('ref')} on "
              f"{run.dataset}@{run.dataset_version}")  # fmt: skip
    for col in ("scorer", "mean", "95% interval", "scored", "unscored"):
        t.add_column(col, justify="left" if col == "scorer" else "right")
    for label, s in (agg.get("scores") or {}).items():
        interval = f"{_fmt(s.get('ci_low'))} .. {_fmt(s.get('ci_high'))}"
        t.add_row(Text(label), _fmt(s.get("mean")), interval, str(s.get("n", 0)),
                  str(s.get("unscored", 0)))  # fmt: skip
    console.print(t)
    lat = agg.get("latency_ms") or {}
    console.print(
        f"latency p50 {_fmt(lat.get('p50'), 1)} ms, p95 {_fmt(lat.get('p95'), 1)} ms; "
        f"cost ${agg.get('cost_usd', 0):.6f} (${_fmt(agg.get('cost_per_item_usd'), 6)}/item); "
        f"tokens {agg.get('input_tokens', 0)} in, {agg.get('output_tokens', 0)} out"
    )


@app.command("run")
def run_cmd(
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="route:NAME, model:NAME, prompt:NAME@V, release:NAME@ALIAS/MEMBER "
            "('prompt:x@2 via ROUTE' sends it to that route)",
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset's name.")],
    scorer: Annotated[list[str], typer.Option("--scorer", help="A scorer (repeatable).")],
    config: Annotated[
        list[str] | None, typer.Option("--config", help="scorer=JSON configuration (repeatable).")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="The dataset version (default: latest).")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=16)] = 2,
    subject: Annotated[
        str | None, typer.Option("--subject", help="The registry version evaluated: model:x@3.")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A name for the run.")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow it to the end.")] = True,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Start a run on the server and follow its progress; exit 1 if it fails."""
    configs = _configs(config or [])
    unknown = sorted(set(configs) - set(scorer))
    if unknown:
        fail(f"--config {unknown[0]}: not one of the --scorer names")
    specs = [{"name": s, "config": configs.get(s, {})} for s in scorer]
    with client(url, key) as c:
        run = c.evals.run(
            target_of(target),
            dataset,
            scorers_of(specs),
            dataset_version=version,
            concurrency=concurrency,
            name=name,
            subject=subject,
        )
        if wait:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[errors]} errors"),
                TimeElapsedColumn(),
                console=err,
                transient=as_json,
            ) as bar:
                task = bar.add_task(run.id, total=run.total, errors=0)

                def show(r: RunPublic) -> None:
                    bar.update(task, completed=r.done, errors=r.errors, description=r.status)

                run = c.evals.wait(run.id, poll=0.5, on_progress=show)
    if as_json:
        _json(run.model_dump(mode="json"))
    else:
        print_run(run)
    if run.status == "failed":
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    status: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None,
        typer.Option("--status"),
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Runs, newest first."""
    with client(url, key) as c:
        rows = c.evals.list(dataset=dataset, status=status)
    if as_json:
        _json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("id", "name", "status", "dataset", "progress", "scores"):
        t.add_column(col)
    for r in rows:
        scores = ", ".join(
            f"{k} {_fmt(v.get('mean'))}" for k, v in (r.aggregates.get("scores") or {}).items()
        )
        t.add_row(r.id, Text(r.name), r.status, Text(f"{r.dataset}@{r.dataset_version}"),
                  f"{r.done}/{r.total}", Text(scores or "-"))  # fmt: skip
    console.print(t)


@app.command("show")
def show_cmd(run_id: str, as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """A run: status, progress and aggregates."""
    with client(url, key) as c:
        run = c.evals.get(run_id)
    if as_json:
        _json(run.model_dump(mode="json"))
    else:
        print_run(run)


@app.command("cancel")
def cancel_cmd(run_id: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Stop a queued or running run (what it finished stays)."""
    with client(url, key) as c:
        run = c.evals.cancel(run_id)
    console.print(f"{run.id} cancelled after {run.done}/{run.total} items")


@app.command("compare")
def compare_cmd(
    run_ids: Annotated[
        list[str], typer.Argument(help="Two or more runs; the first is the baseline.")
    ],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Runs side by side: each against the first, with wins, losses and significance."""
    if len(run_ids) < 2:
        fail("give two or more runs")
    with client(url, key) as c:
        out = c.evals.compare(*run_ids)
    if as_json:
        _json(out)
        return
    t = Table(title=f"against {out['baseline']}")
    for col in ("run", "scorer", "diff", "95% interval", "W/L/T", "sign p", "significant"):
        t.add_column(col)
    for other in out["against"]:
        for label, s in other["scores"].items():
            t.add_row(other["run"], Text(label), f"{s['diff']:+.3f}",
                      f"{s['ci_low']:+.3f} .. {s['ci_high']:+.3f}",
                      f"{s['wins']}/{s['losses']}/{s['ties']}", f"{s['p_sign']:.3g}",
                      "yes" if s["significant"] else "no")  # fmt: skip
    console.print(t)


# Online evaluation -----------------------------------------------------------------------

online_app = typer.Typer(help="Online evaluation: scorers over live traces.", no_args_is_help=True)
app.add_typer(online_app, name="online")


@online_app.command("create")
def online_create(
    name: str,
    scorer: Annotated[list[str], typer.Option("--scorer", help="A scorer (repeatable).")],
    route: Annotated[str, typer.Option("--route", help="Default: every route.")] = "",
    sample: Annotated[float, typer.Option("--sample", help="Share of traces, 0..1.")] = 0.1,
    every: Annotated[int, typer.Option("--every", help="Seconds between windows.")] = 60,
    config: Annotated[
        list[str] | None, typer.Option("--config", help="scorer=JSON configuration (repeatable).")
    ] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Score a sample of live traces on a schedule; scores land as feedback."""
    configs = _configs(config or [])
    specs = [{"name": s, "config": configs.get(s, {})} for s in scorer]
    with client(url, key) as c:
        rule = c.evals.create_online(name, specs, route=route, sample_rate=sample, interval_s=every)
    console.print(f"online rule {rule['name']}: {rule['sample_rate']:.0%} of "
                  f"{rule['route'] or 'every route'} every {rule['interval_s']} s")  # fmt: skip


@online_app.command("list")
def online_list(as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    with client(url, key) as c:
        rules = c.evals.online()
    if as_json:
        _json(rules)
        return
    t = Table()
    for col in ("name", "route", "sample", "every", "scorers", "scored", "enabled", "last error"):
        t.add_column(col)
    for r in rules:
        labels = ", ".join(s["label"] for s in r["scorers"])
        enabled = "yes" if r["enabled"] else "no"
        t.add_row(Text(r["name"]), Text(r["route"] or "*"), f"{r['sample_rate']:.0%}",
                  f"{r['interval_s']} s", Text(labels), str(r["scored"]), enabled,
                  Text(r["last_error"] or "-"))  # fmt: skip
    console.print(t)


@online_app.command("run")
def online_run(name: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Score the rule's traces up to now."""
    with client(url, key) as c:
        scored = c.evals.run_online(name)
    console.print(f"{name}: {scored} traces scored")


@online_app.command("delete")
def online_delete(name: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    with client(url, key) as c:
        c.evals.delete_online(name)
    console.print(f"{name}: deleted")


# Datasets --------------------------------------------------------------------------------


@datasets_app.command("list")
def datasets_list(as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    with client(url, key) as c:
        rows = c.datasets.list()
    if as_json:
        _json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("name", "latest", "items", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(Text(r.name), str(r.latest), str(r.item_count), Text(r.description))
    console.print(t)


@datasets_app.command("upload")
def datasets_upload(
    name: str,
    file: Path,
    fmt: Annotated[
        Literal["csv", "jsonl"] | None,
        typer.Option("--format", help="Default: from the file's suffix."),
    ] = None,
    create: Annotated[bool, typer.Option("--create", help="Make the dataset if missing.")] = False,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """A CSV or JSONL file as one new version, or nothing (the error names the line)."""
    if not file.is_file():
        fail(f"{file}: no such file")
    with client(url, key) as c:
        v = c.datasets.upload(name, file, format=fmt, create=create, message=message)
    console.print(f"{name} version {v.version}: {v.added} added, {v.item_count} items")


@datasets_app.command("export")
def datasets_export(
    name: str,
    fmt: Annotated[Literal["jsonl", "openai", "dpo"], typer.Option("--format")] = "jsonl",
    version: Annotated[int | None, typer.Option("--version")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """JSON lines: the items, OpenAI chat fine-tuning examples, or DPO pairs."""
    with client(url, key) as c:
        text = c.datasets.export(name, format=fmt, version=version)
    write_out(output, text, f"{name} ({fmt})")


@datasets_app.command("versions")
def datasets_versions(
    name: str, as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None
) -> None:
    with client(url, key) as c:
        rows = c.datasets.versions(name)
    if as_json:
        _json([r.model_dump(mode="json") for r in rows])
        return
    t = Table()
    for col in ("version", "items", "+", "~", "-", "author", "message"):
        t.add_column(col)
    for v in rows:
        t.add_row(str(v.version), str(v.item_count), str(v.added), str(v.updated),
                  str(v.removed), Text(v.author), Text(v.message))  # fmt: skip
    console.print(t)
