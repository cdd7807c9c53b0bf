"""Knowledge bases from the SDK (sync and async) and the CLI, against a live server with
the local embeddings route."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.main import app
from shipyard.sdk.client import AsyncClient, Client
from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import pdf

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _cli(args: list[str], code: int = 0) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    return result.output


def test_the_sdk_creates_uploads_waits_searches_and_removes(env: Env, tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(pdf("Quarterly revenue grew by eleven percent."))
    with Client(env.url, env.owner_key) as c:
        kb = c.kb.create("handbook", chunking={"strategy": "fixed", "size": 64, "overlap": 8})
        assert kb.chunking["strategy"] == "fixed" and kb.index_engine in ("hnswlib", "exact")
        sent: list[int] = []
        added = c.kb.upload("handbook", report, progress=sent.append)
        assert sent[-1] == report.stat().st_size
        assert c.kb.wait("handbook", added.ingestion.id, poll=0.1).status == "done"
        added = c.kb.add(
            "handbook", [{"name": "cats.txt", "text": "Cats purr.", "metadata": {"t": 1}}]
        )
        seen: list[str] = []
        job = c.kb.wait(
            "handbook", added.ingestion.id, poll=0.05, on_progress=lambda j: seen.append(j.status)
        )
        assert job.status == "done" and job.counts == {"indexed": 1} and seen[-1] == "done"
        hits = c.kb.search("handbook", "money earned", mode="vector", k=1).hits
        assert hits[0].document == "report.pdf"
        assert c.kb.search("handbook", "purr", where={"t": 1}).hits[0].document == "cats.txt"
        ranked = c.kb.search("handbook", "revenue", mode="lexical", rerank="cosine").hits
        assert ranked and ranked[0].rerank_score == ranked[0].score
        assert {d.name for d in c.kb.documents("handbook")} == {"report.pdf", "cats.txt"}
        assert c.kb.chunks("handbook", document="cats.txt").chunks[0].text == "Cats purr."
        c.kb.remove("handbook", "cats.txt")
        assert c.kb.get("handbook").documents == 1

    async def go() -> None:
        async with AsyncClient(env.url, env.owner_key) as a:
            found = await a.kb.search("handbook", "revenue", mode="lexical")
            assert found.hits[0].document == "report.pdf"
            assert [k.name for k in await a.kb.list()] == ["handbook"]

    asyncio.run(go())


def test_the_cli_adds_files_with_progress_and_searches(env: Env, tmp_path: Path) -> None:
    auth = ["--url", env.url, "--key", env.owner_key]
    (tmp_path / "a.md").write_text("# Refunds\n\nRefunds are paid within 14 days.\n")
    (tmp_path / "b.txt").write_text("The office opens at nine.")
    _cli(["kb", "create", "support", "--strategy", "markdown", "--size", "100", *auth])
    out = _cli(["kb", "add", "support", str(tmp_path / "a.md"), str(tmp_path / "b.txt"), *auth])
    assert "uploading" in out and "indexing" in out and "2 queued and indexed" in out
    out = _cli(["kb", "add", "support", str(tmp_path / "a.md"), *auth])
    assert "0 queued" in out and "1 unchanged" in out
    out = _cli(["kb", "search", "support", "money back", "-k", "1", *auth])
    assert "a.md" in out
    assert "b.txt" in _cli(["kb", "search", "support", "opens", "--mode", "lexical", *auth])
    out = _cli(["kb", "search", "support", "opens", "--rerank", "cosine", "--json", *auth])
    assert '"rerank_score"' in out
    assert "rerank" in _cli(["kb", "search", "support", "x", "--rerank", "nope", *auth], code=1)
    assert "indexed" in _cli(["kb", "docs", "support", *auth])
    assert "support" in _cli(["kb", "list", *auth])
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 junk")
    out = _cli(["kb", "add", "support", str(tmp_path / "bad.pdf"), *auth], code=2)
    assert "bad.pdf" in out
    out = _cli(["kb", "search", "support", "x", "--where", "novalue", *auth], code=2)
    assert "key=value" in out
    _cli(["kb", "rm", "support", "b.txt", *auth])
    assert "b.txt" not in _cli(["kb", "docs", "support", *auth])


def test_the_sdk_and_the_cli_follow_a_table_and_sync_it(env: Env, tmp_path: Path) -> None:
    auth = ["--url", env.url, "--key", env.owner_key]
    db = tmp_path / "src" / "faq.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE faq (qid TEXT PRIMARY KEY, answer TEXT, lang TEXT)")
        conn.execute("INSERT INTO faq VALUES ('a', 'Refunds are paid within 14 days.', 'en')")
    with Client(env.url, env.owner_key) as c:
        c.kb.create("faq")
        got = c.kb.set_source(
            "faq",
            kind="sqlite",
            location=str(db),
            table="faq",
            id_column="qid",
            text_column="answer",
            metadata_columns=["lang"],
            interval_seconds=3600,
        )
        assert got.table == "faq" and got.mode == "schedule" and got.interval_seconds == 3600
    # the CLI syncs now and follows it to the end; a second row is picked up
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO faq VALUES ('b', 'The office opens at nine.', 'en')")
    out = _cli(["kb", "sync", "faq", *auth])
    assert ("syncing" in out or "indexing" in out) and "idle" in out
    assert _cli(["kb", "sync", "faq", "--status", "--json", *auth]).count('"rows": 2') == 1
    assert "row-b" in _cli(["kb", "search", "faq", "opening hours", "-k", "1", *auth])
    # reconfigured from the CLI (the location from the environment), then removed
    os.environ["FAQ_DB"] = str(db)
    try:
        out = _cli(
            [
                "kb",
                "source",
                "faq",
                "--kind",
                "sqlite",
                "--location",
                "env:FAQ_DB",
                "--table",
                "faq",
                "--id-column",
                "qid",
                "--text-column",
                "answer",
                "--continuous",
                *auth,
            ]
        )
    finally:
        del os.environ["FAQ_DB"]
    assert "continuous" in out
    out = _cli(
        [
            "kb",
            "source",
            "faq",
            "--kind",
            "sqlite",
            "--location",
            "env:NOPE_X",
            "--table",
            "faq",
            "--text-column",
            "answer",
            *auth,
        ],
        code=2,
    )
    assert "NOPE_X" in out
    with Client(env.url, env.owner_key) as c:
        assert c.kb.source("faq").mode == "continuous"
        c.kb.remove_source("faq")
    assert "no source" in _cli(["kb", "sync", "faq", *auth], code=1)
