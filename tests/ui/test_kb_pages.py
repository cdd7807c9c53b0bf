"""The knowledge-base pages: list and create (a bad name refused on the page, nothing
stored), a knowledge base's documents with their indexing status, uploads, the search
playground and the chunk viewer, hostile document text escaped, a viewer reading only;
then in real headless Chromium: create, upload, watch it index, search, open the chunks."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env
from tests.registry.support import PASSWORD
from tests.retrieval.support import wait_indexed
from tests.ui.test_evaluation_pages import _session, _user, browser_env, env
from tests.ui.test_tracing_pages import XSS

__all__ = ["browser_env", "env"]


def _kb(env: Env) -> None:
    assert env.admin.post("/api/knowledge-bases", json={"name": "handbook"}).status_code == 201
    r = env.admin.post(
        "/api/knowledge-bases/handbook/documents",
        json={"documents": [{"name": "evil.txt", "text": f"Refund policy {XSS}"}]},
    )
    assert wait_indexed(env.admin, "handbook", r.json()["ingestion"]["id"])["status"] == "done"


def test_pages_render_escape_and_refuse(env: Env) -> None:
    _kb(env)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        listing = client.get("/kb")
        assert listing.status_code == 200 and 'data-kb="handbook"' in listing.text
        bad = client.post("/kb", data={"name": "../x", "size": "200", "overlap": "20"}, headers=hx)
        assert bad.status_code == 400 and "name" in bad.text
        bad = client.post("/kb", data={"name": "ok", "size": "10", "overlap": "10"}, headers=hx)
        assert bad.status_code == 400 and "overlap must be smaller" in bad.text
        assert [k["name"] for k in env.admin.get("/api/knowledge-bases").json()] == ["handbook"]
        page = client.get("/kb/handbook")
        assert page.status_code == 200 and 'data-document="evil.txt"' in page.text
        assert XSS not in page.text
        found = client.post(
            "/kb/handbook/search", data={"query": "refund", "mode": "lexical"}, headers=hx
        )
        assert found.status_code == 200 and 'data-hit="evil.txt"' in found.text
        assert XSS not in found.text and "&lt;" in found.text
        ranked = client.post(
            "/kb/handbook/search",
            data={"query": "refund", "mode": "lexical", "rerank": "cosine"},
            headers=hx,
        )
        assert ranked.status_code == 200 and 'data-hit="evil.txt"' in ranked.text
        assert '<option value="cosine" selected' in ranked.text
        unknown = client.post(
            "/kb/handbook/search", data={"query": "x", "rerank": "nope"}, headers=hx
        )
        assert unknown.status_code == 400 and "no reranker" in unknown.text
        chunks = client.get("/kb/handbook/chunks", params={"document": "evil.txt"})
        assert (
            chunks.status_code == 200 and 'data-chunk="0"' in chunks.text and XSS not in chunks.text
        )
        up = client.post(
            "/kb/handbook/upload", files={"file": ("broken.pdf", b"%PDF-1.4 nope")}, headers=hx
        )
        assert up.status_code == 400 and "broken.pdf" in up.text
        assert client.get("/kb/nope").status_code == 404
        bad = client.post("/kb/handbook/search", data={"query": "x", "mode": "psychic"}, headers=hx)
        assert bad.status_code == 400
    _user(env, "vi@example.com", "viewer")
    with _session(env, "vi@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/kb/handbook")
        assert (
            page.status_code == 200
            and "Upload" not in page.text
            and "your role cannot" in page.text
        )
        assert viewer.post("/kb/handbook/documents/evil.txt/delete", headers=hx).status_code == 403
        assert viewer.post("/kb", data={"name": "mine"}, headers=hx).status_code == 403
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        gone = client.post("/kb/handbook/documents/evil.txt/delete", headers=hx)
        assert "evil.txt: deleted" in gone.text
        assert env.admin.get("/api/knowledge-bases/handbook").json()["chunks"] == 0


@pytest.mark.browser
def test_create_upload_index_search_in_the_browser(
    browser_env: tuple[Any, Env], tmp_path: Path
) -> None:
    page, env = browser_env
    page.goto(env.url + "/kb")
    page.fill("input[name=name]", "support")
    page.select_option("select[name=strategy]", "markdown")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("status").wait_for()
    assert "Knowledge base support created" in page.get_by_role("status").inner_text()
    page.get_by_role("link", name="support").click()
    doc = tmp_path / "refunds.md"
    doc.write_text(
        "# Refunds\n\nMoney is returned within fourteen days.\n\n# Hours\n\nWe open at nine.\n"
    )
    page.set_input_files("input[type=file]", str(doc))
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("status").wait_for()
    page.locator('#kb-documents[data-active="no"]').wait_for(timeout=60_000)
    assert (
        "indexed" in page.locator('[data-document="refunds.md"] [data-testid=status]').inner_text()
    )
    page.fill("input[name=query]", "get my money back")
    page.select_option("select[name=rerank]", "cosine")
    page.get_by_role("button", name="Search").click()
    page.locator("#hits").wait_for()
    first = page.locator("#hits tbody tr").first
    assert "refunds.md" in first.inner_text() and "Refunds" in first.inner_text()
    first.get_by_role("link", name="refunds.md").click()
    page.locator("#chunks").wait_for()
    assert page.locator("#chunks tbody tr").count() == 2


def _followed(env: Env, tmp_path: Path) -> Path:
    """A knowledge base `wiki` following a SQLite table of one row, synced once."""
    db = tmp_path / "src" / f"wiki-{len(list(tmp_path.iterdir()))}.db"
    db.parent.mkdir(exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO pages VALUES (1, ?)", (f"Refunds take two weeks {XSS}",))
    assert env.admin.post("/api/knowledge-bases", json={"name": "wiki"}).status_code == 201
    r = env.admin.put(
        "/api/knowledge-bases/wiki/source",
        json={"kind": "sqlite", "location": str(db), "table": "pages", "text_column": "body",
              "interval_seconds": 3600},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while True:
        got = env.admin.get("/api/knowledge-bases/wiki/source").json()
        if got["syncs"] and not got["pending"]:
            return db
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def test_the_source_card_shows_the_sync_and_a_viewer_cannot_sync(env: Env, tmp_path: Path) -> None:
    db = _followed(env, tmp_path)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        page = client.get("/kb/wiki")
        assert page.status_code == 200 and 'data-status="idle"' in page.text
        assert "Sync now" in page.text and str(db) in page.text and XSS not in page.text
        card = client.get("/kb/wiki/source")
        assert card.status_code == 200 and 'data-testid="sync-rows">1<' in card.text
        asked = client.post("/kb/wiki/sync", headers=hx)
        assert asked.status_code == 200 and "Sync asked for" in asked.text
        _kb(env)
        assert "follows no table" in client.get("/kb/handbook").text
    _user(env, "vi2@example.com", "viewer")
    with _session(env, "vi2@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get("/kb/wiki")
        assert page.status_code == 200 and "Sync now" not in page.text
        assert viewer.post("/kb/wiki/sync", headers=hx).status_code == 403


@pytest.mark.browser
def test_sync_now_in_the_browser_picks_up_a_new_row(
    browser_env: tuple[Any, Env], tmp_path: Path
) -> None:
    page, env = browser_env
    db = _followed(env, tmp_path)
    page.goto(env.url + "/kb/wiki")
    assert page.locator("[data-testid=sync-rows]").inner_text() == "1"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO pages VALUES (2, 'The office opens at nine.')")
    page.get_by_role("button", name="Sync now").click()
    page.get_by_role("status").wait_for()
    # the card refreshes itself until the sync ran and its rows are indexed
    page.locator("[data-testid=sync-rows]", has_text="2").wait_for(timeout=60_000)
    page.locator('#kb-source[data-status="idle"]').wait_for(timeout=60_000)
    page.reload()
    assert page.locator('[data-document="row-2"]').count() == 1
