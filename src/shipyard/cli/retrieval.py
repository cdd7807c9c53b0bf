"""`shipyard kb ...`: knowledge bases: create, add files (a progress bar while they upload
and while the server indexes them), search, list, documents, remove; follow a table
(source) and sync it.

    shipyard kb create handbook --strategy markdown --size 200
    shipyard kb add handbook docs/*.md guide.pdf
    shipyard kb search handbook "how do refunds work?" -k 5 --where team=support
    shipyard kb source handbook --kind postgres --location env:ARTICLES_DB \
        --table articles --text-column body --updated-column updated_at --continuous
    shipyard kb sync handbook"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shipyard.cli.common import JsonOpt, KeyOpt, UrlOpt, client, console, fail
from shipyard.sdk.calls import ShipyardAPIError

app = typer.Typer(help="Knowledge bases: documents, indexing, search.", no_args_is_help=True)


def _json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@app.command("create")
def create(
    name: str,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    route: Annotated[str, typer.Option("--embedding-route", help="Embeddings route.")] = (
        "all-minilm-l6-v2"
    ),
    strategy: Annotated[
        Literal["recursive", "markdown", "fixed"], typer.Option("--strategy")
    ] = "recursive",
    size: Annotated[int, typer.Option("--size", help="Tokens per chunk, at most.")] = 200,
    overlap: Annotated[int, typer.Option("--overlap", help="Tokens shared by neighbours.")] = 20,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    chunking = {"strategy": strategy, "size": size, "overlap": overlap}
    with client(url, key) as c:
        kb = c.kb.create(name, description=description, embedding_route=route, chunking=chunking)
    console.print(f"knowledge base {kb.name} ({kb.embedding_route}, {strategy} chunks of {size})")


@app.command("list")
def list_kbs(as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    with client(url, key) as c:
        kbs = c.kb.list()
    if as_json:
        _json([k.model_dump() for k in kbs])
        return
    t = Table()
    for col in ("name", "documents", "chunks", "route", "index"):
        t.add_column(col)
    for k in kbs:
        t.add_row(k.name, str(k.documents), str(k.chunks), k.embedding_route, k.index_engine)
    console.print(t)


@app.command("add")
def add(
    name: str,
    files: Annotated[
        list[Path], typer.Argument(help="Files: txt, md, html, pdf, json, jsonl, csv.")
    ],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the indexing.")] = True,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Upload files; each changed one is indexed by the server (unchanged ones are skipped)."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    jobs: list[str] = []
    skipped = 0
    with client(url, key) as c, _bar() as bar:
        total = sum(f.stat().st_size for f in files)
        up = bar.add_task("uploading", total=total)
        sent = 0
        for f in files:
            base = sent

            def moved(n: int, base: int = base) -> None:
                bar.update(up, completed=base + n)

            try:
                added = c.kb.upload(name, f, progress=moved)
            except ShipyardAPIError as exc:
                bar.stop()
                fail(exc.detail)
            sent += f.stat().st_size
            bar.update(up, completed=sent)
            skipped += len(added.unchanged)
            if added.ingestion is not None:
                jobs.append(added.ingestion.id)
        if wait and jobs:
            task = bar.add_task("indexing", total=len(jobs))
            failed: list[str] = []
            for job_id in jobs:
                job = c.kb.wait(name, job_id)
                if job.status != "done":
                    failed.append(job_id)
                bar.advance(task)
            if failed:
                bar.stop()
                for doc in c.kb.documents(name, status="failed"):
                    console.print(f"[red]{doc.error}[/red]")
                fail(f"{len(failed)} of {len(jobs)} files were not indexed", code=1)
    console.print(f"{len(jobs)} queued{' and indexed' if wait else ''}, {skipped} unchanged")


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _where(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            fail(f"--where {pair!r}: give key=value")
        out.setdefault(k, []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


@app.command("search")
def search(
    name: str,
    query: str,
    k: Annotated[int, typer.Option("-k", help="How many hits.")] = 5,
    mode: Annotated[Literal["hybrid", "vector", "lexical"], typer.Option("--mode")] = "hybrid",
    where: Annotated[list[str], typer.Option("--where", help="key=value (repeat: any of)")] = [],  # noqa: B006
    rerank: Annotated[
        str | None, typer.Option("--rerank", help="A registered reranker (built-in: cosine).")
    ] = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    with client(url, key) as c:
        found = c.kb.search(name, query, k=k, mode=mode, where=_where(where) or None, rerank=rerank)
    if as_json:
        _json(found.model_dump())
        return
    t = Table(title=f"{mode}: {query}")
    for col in ("#", "score", "document", "text"):
        t.add_column(col)
    for n, h in enumerate(found.hits, 1):
        t.add_row(str(n), f"{h.score:.4f}", h.document, h.text[:120].replace("\n", " "))
    console.print(t)


@app.command("docs")
def documents(name: str, as_json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    with client(url, key) as c:
        docs = c.kb.documents(name)
    if as_json:
        _json([d.model_dump() for d in docs])
        return
    t = Table()
    for col in ("document", "status", "chunks", "bytes", "error"):
        t.add_column(col)
    for d in docs:
        t.add_row(d.name, d.status, str(d.chunk_count), str(d.size_bytes), d.error)
    console.print(t)


@app.command("rm")
def remove(name: str, document: str, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """A document, its chunks and their vectors."""
    with client(url, key) as c:
        c.kb.remove(name, document)
    console.print(f"removed {document} from {name}")


@app.command("source")
def set_source(
    name: str,
    kind: Annotated[Literal["sqlite", "postgres"], typer.Option("--kind")],
    location: Annotated[
        str,
        typer.Option(
            "--location",
            help="The SQLite file's absolute path or a postgresql:// URL; env:VAR reads it "
            "from the environment (keeps a password off the command line).",
        ),
    ],
    table: Annotated[str, typer.Option("--table")],
    text_column: Annotated[str, typer.Option("--text-column")],
    id_column: Annotated[str, typer.Option("--id-column")] = "id",
    updated_column: Annotated[
        str | None, typer.Option("--updated-column", help="Grows with each change of a row.")
    ] = None,
    metadata_column: Annotated[list[str], typer.Option("--metadata-column")] = [],  # noqa: B006
    continuous: Annotated[bool, typer.Option("--continuous", help="Sync every second.")] = False,
    every: Annotated[float, typer.Option("--every", help="Seconds between syncs.")] = 300,
    allow_internal: Annotated[bool, typer.Option("--allow-internal")] = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Make the knowledge base follow a table: each row with text is a document."""
    if location.startswith("env:"):
        var = location[4:]
        location = os.environ.get(var, "")
        if not location:
            fail(f"--location env:{var}: the variable is not set")
    with client(url, key) as c:
        got = c.kb.set_source(
            name,
            kind=kind,
            location=location,
            table=table,
            id_column=id_column,
            text_column=text_column,
            updated_column=updated_column,
            metadata_columns=metadata_column,
            mode="continuous" if continuous else "schedule",
            interval_seconds=None if continuous else every,
            allow_internal=allow_internal,
        )
    console.print(f"{name} follows {got.kind} table {got.table} at {got.location} ({got.mode})")


@app.command("sync")
def sync(
    name: str,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the sync.")] = True,
    status_only: Annotated[bool, typer.Option("--status", help="Only show the status.")] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    key: KeyOpt = None,
) -> None:
    """Sync the knowledge base with its table now (a progress bar while its changed rows
    are indexed), or show where its sync stands."""
    with client(url, key) as c:
        if status_only:
            got = c.kb.source(name)
        else:
            before = c.kb.sync(name).syncs
            got = _follow_sync(c, name, before) if wait else c.kb.source(name)
    if as_json:
        _json(got.model_dump())
        return
    t = Table(title=f"{name}: {got.kind} table {got.table}")
    t.add_column("field")
    t.add_column("value")
    lag = "-" if got.lag_seconds is None else f"{got.lag_seconds:.1f} s"
    for field, value in (
        ("status", got.status),
        ("rows", str(got.rows)),
        ("last sync: changed / deleted", f"{got.last_changed} / {got.last_deleted}"),
        ("waiting to be indexed", str(got.pending)),
        ("lag", lag),
        ("syncs", str(got.syncs)),
        ("next", str(got.next_run_at)),
        ("error", got.error or "-"),
    ):
        t.add_row(field, value)
    console.print(t)
    if got.status == "failed":
        raise typer.Exit(1)


def _follow_sync(c: Any, name: str, before: int) -> Any:
    with _bar() as bar:
        task = bar.add_task("syncing", total=None)
        got = c.kb.source(name)
        while got.syncs <= before or got.status == "syncing":
            time.sleep(0.3)
            got = c.kb.source(name)
        if got.status != "failed" and got.pending:
            total = got.pending
            bar.update(task, description="indexing", total=total, completed=0)
            while got.pending:
                bar.update(task, completed=total - min(total, got.pending))
                time.sleep(0.3)
                got = c.kb.source(name)
        bar.update(task, total=1, completed=1)
    return got
