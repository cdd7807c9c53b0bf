"""Knowledge bases through the API, with the local MiniLM embeddings route: documents
added as text and uploaded as files (Markdown, HTML, CSV, JSONL, PDF), indexed in the
background, searched by vector, by text and both; re-uploads replace or skip; deletes
really delete; hostile input is refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.identity import service as identity
from shipyard.identity.roles import Role
from tests.conftest import _pg_database, as_key
from tests.gateway.conftest import Env, make_env
from tests.retrieval.support import pdf, wait_indexed

DOCS = [
    {
        "name": "pets.md",
        "text": "# Pets\n\nCats are small domesticated felines that purr and sleep most of "
        "the day.\n\n## Dogs\n\nDogs are loyal companions that enjoy long walks in the park.",
        "metadata": {"team": "animals"},
    },
    {
        "name": "codes.txt",
        "text": "The warehouse door code is ZX-4471. Reset it every quarter.",
        "metadata": {"team": "ops"},
    },
    {
        "name": "space.txt",
        "text": "Astronauts orbit the planet aboard the international station.",
        "metadata": {"team": "science"},
    },
]


@pytest.fixture
def env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """On SQLite (FTS5) and on PostgreSQL (tsvector)."""
    url = None
    if backend == "postgres":
        url = _pg_database(request.getfixturevalue("pg_server"))
    yield from make_env(tmp_path, database_url=url)


def _create(env: Env, name: str = "handbook", **extra: Any) -> dict[str, Any]:
    r = env.admin.post("/api/knowledge-bases", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _add(env: Env, kb: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    r = env.admin.post(f"/api/knowledge-bases/{kb}/documents", json={"documents": docs})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    if body["ingestion"]:
        done = wait_indexed(env.admin, kb, body["ingestion"]["id"])
        assert done["status"] == "done", done
    return body


def _search(env: Env, kb: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    r = env.admin.post(f"/api/knowledge-bases/{kb}/search", json={"query": query, **extra})
    assert r.status_code == 200, r.text
    return r.json()["hits"]  # type: ignore[no-any-return]


def test_documents_are_chunked_embedded_and_found_by_meaning_and_by_words(env: Env) -> None:
    _create(env, chunking={"strategy": "markdown", "size": 64, "overlap": 8})
    added = _add(env, "handbook", DOCS)
    assert sorted(added["queued"]) == ["codes.txt", "pets.md", "space.txt"]
    kb = env.admin.get("/api/knowledge-bases/handbook").json()
    assert kb["documents"] == 3 and kb["chunks"] >= 4 and kb["dimensions"] == 384

    # semantic-only: no word of the query is in the document
    hits = _search(env, "handbook", "kitten", mode="vector")
    assert hits[0]["document"] == "pets.md" and hits[0]["metadata"]["section"] == "Pets"
    # lexical-only: a code the embedding model cannot place
    hits = _search(env, "handbook", "ZX-4471", mode="lexical")
    assert [h["document"] for h in hits] == ["codes.txt"]
    # hybrid ranks both kinds of match: the lexical-only one and the semantic-only one
    both = _search(env, "handbook", "ZX-4471 kitten", k=3)
    docs = [h["document"] for h in both]
    assert "codes.txt" in docs[:2] and "pets.md" in docs[:2], both
    assert all(h["score"] > 0 for h in both)

    # metadata filters, in both rankings
    hits = _search(env, "handbook", "walks in the park", where={"team": "science"})
    assert {h["document"] for h in hits} == {"space.txt"}
    hits = _search(env, "handbook", "walks in the park", where={"document": ["pets.md"]})
    assert hits and all(h["document"] == "pets.md" for h in hits)

    chunks = env.admin.get("/api/knowledge-bases/handbook/chunks", params={"document": "pets.md"})
    assert chunks.status_code == 200, chunks.text
    sections = [c["metadata"]["section"] for c in chunks.json()["chunks"]]
    assert sections == ["Pets", "Pets > Dogs"]


def test_reupload_skips_unchanged_replaces_changed_and_delete_really_deletes(env: Env) -> None:
    _create(env)
    _add(env, "handbook", DOCS)
    again = _add(env, "handbook", DOCS[:1])
    assert again["ingestion"] is None and again["unchanged"] == ["pets.md"]

    changed = {**DOCS[1], "text": "The warehouse door code is now QP-9902."}
    _add(env, "handbook", [changed])
    assert _search(env, "handbook", "ZX-4471", mode="lexical") == []
    assert [h["document"] for h in _search(env, "handbook", "QP-9902", mode="lexical")] == [
        "codes.txt"
    ]

    chunks = "/api/knowledge-bases/handbook/chunks"
    highest = max(c["id"] for c in env.admin.get(chunks).json()["chunks"])  # codes.txt's
    r = env.admin.delete("/api/knowledge-bases/handbook/documents/codes.txt")
    assert r.status_code == 204, r.text
    for mode in ("vector", "lexical", "hybrid"):
        hits = _search(env, "handbook", "warehouse door code QP-9902", mode=mode)
        assert all(h["document"] != "codes.txt" for h in hits), (mode, hits)
    left = env.admin.get(chunks).json()["chunks"]
    assert {c["document"] for c in left} == {"pets.md", "space.txt"}
    # a chunk id is the vector index's label: one deleted is never handed out again
    _add(env, "handbook", [{"name": "new.txt", "text": "Parcels leave at noon."}])
    added = env.admin.get(chunks, params={"document": "new.txt"}).json()["chunks"]
    assert added and min(c["id"] for c in added) > highest


def test_files_of_every_format_upload_and_bad_ones_are_refused_whole(env: Env) -> None:
    _create(env)
    files = {
        "guide.html": (
            b"<html><head><style>p{}</style><script>var secret=1</script></head><body>"
            b"<h1>Returns</h1><p>Refunds are issued within 14 days.</p></body></html>"
        ),
        "people.csv": b"name,role\nAna,engineer\nBo,designer\n",
        "faq.jsonl": b'{"q": "opening hours", "a": "nine to five"}\n',
        "report.pdf": pdf("Quarterly revenue grew by eleven percent.", "Page two text."),
    }
    for name, data in files.items():
        r = env.admin.post("/api/kb-uploads/handbook", params={"filename": name}, content=data)
        assert r.status_code == 202, (name, r.text)
        done = wait_indexed(env.admin, "handbook", r.json()["ingestion"]["id"])
        assert done["status"] == "done", (name, done)
    texts = {
        c["document"]: c["text"]
        for c in env.admin.get("/api/knowledge-bases/handbook/chunks").json()["chunks"]
    }
    assert "# Returns" in texts["guide.html"] and "secret" not in texts["guide.html"]
    assert "role: engineer" in texts["people.csv"]
    assert "a: nine to five" in texts["faq.jsonl"]
    assert "eleven percent" in texts["report.pdf"] and "Page two" in texts["report.pdf"]
    assert _search(env, "handbook", "revenue", mode="lexical")[0]["document"] == "report.pdf"

    bad = {
        "../etc/passwd.txt": (b"x", "folder"),
        "broken.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "broken.pdf"),
        "fake.pdf": (b"not a pdf at all", "fake.pdf: not a PDF"),
        "latin1.txt": ("café".encode("latin-1"), "latin1.txt: line 1: not UTF-8"),
        "rows.csv": (b"a,b\n1,2,3\n", "rows.csv: line 2"),
        "lines.jsonl": (b'{"a": 1}\n{oops\n', "lines.jsonl: line 2"),
        "empty.txt": (b"   \n", "holds no text"),
        "program.exe": (b"MZ", "unknown file type"),
    }
    before = env.admin.get("/api/knowledge-bases/handbook").json()
    for name, (data, why) in bad.items():
        r = env.admin.post("/api/kb-uploads/handbook", params={"filename": name}, content=data)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert why in r.json()["detail"], (name, r.json())
    after = env.admin.get("/api/knowledge-bases/handbook").json()
    assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"])

    big = env.admin.post(
        "/api/kb-uploads/handbook",
        params={"filename": "big.txt"},
        content=b"a" * (env.app.state.platform.settings.kb_upload_max_bytes + 1),
    )
    assert big.status_code == 413, big.text


def test_roles_and_workspaces(env: Env) -> None:
    from tests.conftest import key_for

    _create(env)
    _add(env, "handbook", DOCS[:1])
    viewer = as_key(key_for(env.admin, "viewer"))  # type: ignore[arg-type]
    app = as_key(key_for(env.admin, "app"))  # type: ignore[arg-type]
    assert env.admin.get("/api/knowledge-bases", headers=viewer).status_code == 200
    r = env.admin.post("/api/knowledge-bases", json={"name": "x"}, headers=viewer)
    assert r.status_code == 403, r.text
    r = env.admin.post(
        "/api/knowledge-bases/handbook/search", json={"query": "cat"}, headers=viewer
    )
    assert r.status_code == 403, r.text
    r = env.admin.post("/api/knowledge-bases/handbook/search", json={"query": "cat"}, headers=app)
    assert r.status_code == 200 and r.json()["hits"], r.text
    assert env.admin.get("/api/knowledge-bases", headers=app).status_code == 403
    # another workspace sees none of it
    ws = env.admin.post("/api/workspaces", json={"slug": "elsewhere"})
    assert ws.status_code == 201, ws.text
    with env.app.state.platform.db.transaction() as s:
        _, key = identity.create_key(
            s, actor=None, workspace_id=ws.json()["id"], name="elsewhere", role=Role("admin")
        )
    o = as_key(key)
    assert env.admin.get("/api/knowledge-bases", headers=o).json() == []
    r = env.admin.post("/api/knowledge-bases/handbook/search", json={"query": "cat"}, headers=o)
    assert r.status_code == 404, r.text


def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    for round_ in range(2):
        for env in make_env(tmp_path):
            if round_ == 0:
                _create(env)
                _add(env, "handbook", DOCS)
                env.admin.delete("/api/knowledge-bases/handbook/documents/space.txt")
            hits = _search(env, "handbook", "kitten", mode="vector", k=10)
            assert hits[0]["document"] == "pets.md"
            assert all(h["document"] != "space.txt" for h in hits)
    assert (tmp_path / "home" / "indexes").is_dir()
