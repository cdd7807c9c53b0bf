"""Table-synced knowledge bases: a knowledge base follows a table in a real SQLite file
and in a real PostgreSQL database (inserts, updates, deletes picked up; searches find
what the table holds now), its status says where it stands, and a source is admin
configuration with the outbound-address rules of providers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import _pg_database, as_key
from tests.gateway.conftest import Env, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _status(env: Env, kb: str) -> dict[str, Any]:
    r = env.admin.get(f"/api/knowledge-bases/{kb}/source")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _settled(env: Env, kb: str, after: int, timeout: float = 90) -> dict[str, Any]:
    """The source's status once a sync later than the `after`th has run and its
    documents are indexed."""
    deadline = time.monotonic() + timeout
    while True:
        body = _status(env, kb)
        if body["syncs"] > after and body["status"] != "syncing" and body["pending"] == 0:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _found(env: Env, kb: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    r = env.admin.post(f"/api/knowledge-bases/{kb}/search", json={"query": query, "k": 10, **extra})
    assert r.status_code == 200, r.text
    return r.json()["hits"]  # type: ignore[no-any-return]


def _documents(env: Env, kb: str) -> set[str]:
    r = env.admin.get(f"/api/knowledge-bases/{kb}/documents")
    assert r.status_code == 200, r.text
    return {d["name"] for d in r.json()}


def _follow(
    env: Env,
    kb: str,
    write: Callable[[str, tuple[Any, ...]], None],
    source: dict[str, Any],
    *,
    nudge: bool,
) -> None:
    """Inserts, updates and deletes in the source show in the knowledge base."""
    r = env.admin.post("/api/knowledge-bases", json={"name": kb})
    assert r.status_code == 201, r.text
    r = env.admin.put(f"/api/knowledge-bases/{kb}/source", json=source)
    assert r.status_code == 200, r.text
    assert "hunter2" not in r.text  # the password is never shown
    status = _settled(env, kb, 0)
    assert status["status"] == "idle" and status["error"] == "", status
    assert status["rows"] == 3 and status["lag_seconds"] is not None
    assert _documents(env, kb) == {"row-1", "row-2", "row-3"}
    top = _found(env, kb, "kitten", mode="vector")[0]
    assert top["document"] == "row-1" and top["metadata"]["team"] == "pets"
    assert top["metadata"]["row_id"] == "1"
    assert {h["document"] for h in _found(env, kb, "anything", where={"team": "ops"})} == {"row-2"}

    # update one row, delete one, add one
    write(
        "UPDATE docs SET body = ?, updated_at = ? WHERE id = 2",
        ("Spacecraft orbit the moon.", 20.0),
    )
    write("DELETE FROM docs WHERE id = 3", ())
    write(
        "INSERT INTO docs (id, body, team, updated_at) VALUES (?, ?, ?, ?)",
        (4, "Tulips and roses bloom in the spring garden.", "plants", 21.0),
    )
    seen = status["syncs"]
    if nudge:
        assert env.admin.post(f"/api/knowledge-bases/{kb}/sync").status_code == 202
    # a later sync catches all three (a continuous source needs no nudge)
    deadline = time.monotonic() + 90
    while _documents(env, kb) != {"row-1", "row-2", "row-4"}:
        assert time.monotonic() < deadline, _documents(env, kb)
        time.sleep(0.1)
    status = _settled(env, kb, seen)
    assert status["rows"] == 3, status
    assert _found(env, kb, "flowers", mode="vector")[0]["document"] == "row-4"
    hits = _found(env, kb, "Spacecraft", mode="lexical")
    assert [h["document"] for h in hits] == ["row-2"]
    assert "door code" not in str(_found(env, kb, "door code"))  # the old text is gone
    assert not [h for h in _found(env, kb, "astronaut station") if h["document"] == "row-3"]


ROWS = [
    (1, "Cats are small domesticated felines that purr.", "pets", 10.0),
    (2, "The warehouse door code is ZX-4471.", "ops", 10.0),
    (3, "Astronauts live aboard the international station.", "science", 10.0),
]


def test_a_knowledge_base_follows_a_sqlite_table(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "source" / "content.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, team TEXT, updated_at REAL)"
        )
        conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", ROWS)
        conn.execute("INSERT INTO docs VALUES (9, NULL, 'none', 1.0)")  # no text: no document

    def write(sql: str, params: tuple[Any, ...]) -> None:
        with sqlite3.connect(path) as c:
            c.execute(sql, params)

    source = {
        "kind": "sqlite",
        "location": str(path),
        "table": "docs",
        "text_column": "body",
        "updated_column": "updated_at",
        "metadata_columns": ["team"],
        "mode": "continuous",
    }
    _follow(env, "wiki", write, source, nudge=False)
    status = _status(env, "wiki")
    assert status["mode"] == "continuous" and status["interval_seconds"] == 1
    assert status["watermark"] and "21" in status["watermark"]


@pytest.mark.postgres
def test_a_knowledge_base_follows_a_postgresql_table(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("pg_server")
    # Shipyard's own database on PostgreSQL too: its vectors are in pgvector
    meta = _pg_database(server)
    url = _pg_database(server).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE docs (id int PRIMARY KEY, body text, team text, updated_at float)"
        )
        for row in ROWS:
            conn.execute("INSERT INTO docs VALUES (%s, %s, %s, %s)", row)

    def write(sql: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(sql.replace("?", "%s"), params)

    # no updated-at column: every sync compares every row
    source = {
        "kind": "postgres",
        "location": url.replace("postgres@", "postgres:hunter2@", 1) if "postgres@" in url else url,
        "table": "public.docs",
        "text_column": "body",
        "metadata_columns": ["team"],
        "interval_seconds": 3600,
        "allow_internal": True,  # a Unix socket on this machine
    }
    for env in make_env(tmp_path, database_url=meta):
        kb = env.admin.post("/api/knowledge-bases", json={"name": "probe"})
        assert kb.status_code == 201
        assert kb.json()["index_engine"] == "pgvector"
        _follow(env, "wiki", write, source, nudge=True)
        status = _status(env, "wiki")
        assert "hunter2" not in str(status) and status["watermark"] is None


def test_a_source_is_admin_configuration_checked_like_a_provider(env: Env, tmp_path: Path) -> None:
    assert env.admin.post("/api/knowledge-bases", json={"name": "kb"}).status_code == 201
    base = {"kind": "postgres", "table": "docs", "text_column": "body"}

    def put(body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return env.admin.put("/api/knowledge-bases/kb/source", json=body, headers=headers)

    for location, says in (
        ("postgresql://u:p@169.254.169.254/db", "169.254.169.254"),
        ("postgresql://u:p@127.0.0.1:5432/db", "internal address"),
        ("postgresql://u:p@metadata.google.internal/db", "metadata"),
        ("postgresql://u@10.0.0.8/db", "internal address"),
        ("postgresql:///db?host=/tmp", "Unix socket"),
        ("mysql://u:p@example.com/db", "postgresql://"),
        ("postgresql://u:p@example.com:abc/db", "postgresql://"),  # a port that is no number
    ):
        r = put({**base, "location": location})
        assert r.status_code == 400, (location, r.text)
        assert r.json()["detail"].startswith("location:") and says in r.json()["detail"]
        assert "p@" not in r.json()["detail"]
    # a bad identifier is refused by its pattern, before any connection
    for bad in ({"table": "docs; DROP TABLE x"}, {"text_column": 'body"--'}, {"id_column": ""}):
        r = put({**base, "location": "postgresql://u:p@example.com/db", **bad})
        assert r.status_code == 422, r.text
    # a workspace admin who is not a platform administrator: no files, no internal hosts
    admin_key, _ = env.key("ws-admin", role="admin")
    source_file = tmp_path / "outside.db"
    sqlite3.connect(source_file).close()
    r = put({**base, "kind": "sqlite", "location": str(source_file)}, as_key(admin_key))
    assert r.status_code == 403 and r.json()["detail"].startswith("location:"), r.text
    r = put(
        {**base, "location": "postgresql://u:p@db.internal/db", "allow_internal": True},
        as_key(admin_key),
    )
    assert r.status_code == 403 and "allow_internal" in r.json()["detail"]
    developer, _ = env.key("dev", role="developer")
    r = put({**base, "location": "postgresql://u:p@example.com/db"}, as_key(developer))
    assert r.status_code == 403
    # files: absolute, existing, not Shipyard's own
    home = env.app.state.platform.settings.home
    for location, says in (
        ("relative.db", "absolute"),
        (str(tmp_path / "missing.db"), "no file"),
        (str(home / "shipyard.db"), "data directory"),
    ):
        r = put({**base, "kind": "sqlite", "location": location})
        assert r.status_code == 400 and says in r.json()["detail"], (location, r.text)
    # a table or column that is not there is named when the source is configured
    with sqlite3.connect(source_file) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    r = put({**base, "kind": "sqlite", "location": str(source_file), "table": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["detail"], r.text
    r = put({**base, "kind": "sqlite", "location": str(source_file), "text_column": "text"})
    assert r.status_code == 400 and "text" in r.json()["detail"], r.text
    assert env.admin.get("/api/knowledge-bases/kb/source").status_code == 404
    # a good one lands, and can be removed (its documents stay)
    assert put({**base, "kind": "sqlite", "location": str(source_file)}).status_code == 200
    assert env.admin.delete("/api/knowledge-bases/kb/source").status_code == 204
    assert env.admin.get("/api/knowledge-bases/kb/source").status_code == 404
    assert env.admin.post("/api/knowledge-bases/kb/sync").status_code == 404


def test_a_password_in_the_url_query_is_not_shown() -> None:
    from shipyard.identity.actor import Actor
    from shipyard.identity.roles import Role
    from shipyard.retrieval.schemas import SourceIn
    from shipyard.retrieval.source import checked

    admin = Actor(
        kind="key", id="k", label="ops", workspace_id="ws", role=Role.owner, platform_admin=True
    )
    body = SourceIn(
        kind="postgres", location="postgresql:///db?host=/run/pg&password=s3cret&sslpassword=x2",
        table="docs", text_column="body", allow_internal=True,
    )  # fmt: skip
    sealed, shown = checked(body, admin, Path("/nonexistent-data-dir"))
    assert "s3cret" in sealed and "s3cret" not in shown and "x2" not in shown
    assert "host=%2Frun%2Fpg" in shown


def test_a_sync_that_fails_after_deleting_drops_their_vectors(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row deleted from the source, then a sync that fails once it has removed that
    row's document: the document's vectors leave the index too (they took search slots
    until a restart)."""
    from shipyard.retrieval.source import Reader, SourceError

    path = tmp_path / "content.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, t) for i, t, _, _ in ROWS])
    kb = env.admin.post("/api/knowledge-bases", json={"name": "wiki"})
    assert kb.status_code == 201, kb.text
    source = {"kind": "sqlite", "location": str(path), "table": "docs", "text_column": "body",
              "interval_seconds": 3600}  # fmt: skip
    assert env.admin.put("/api/knowledge-bases/wiki/source", json=source).status_code == 200
    first = _settled(env, "wiki", 0)
    index = env.app.state.platform.services["retrieval"].index
    assert _found(env, "wiki", "astronaut station")  # the space is in memory from here
    before = index.count(kb.json()["id"])
    assert before >= 3, before

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM docs WHERE id = 3")

    def broken(self: Reader) -> Any:
        raise SourceError("the source went away mid-sync")
        yield  # a generator, like the real one

    monkeypatch.setattr(Reader, "every", broken)
    assert env.admin.post("/api/knowledge-bases/wiki/sync").status_code == 202
    status = _settled(env, "wiki", first["syncs"])
    assert status["status"] == "failed" and "went away" in status["error"], status
    assert _documents(env, "wiki") == {"row-1", "row-2"}  # deleted before the failure
    assert index.count(kb.json()["id"]) == before - 1  # and its vector with it
    assert not [h for h in _found(env, "wiki", "astronaut station") if h["document"] == "row-3"]


def test_a_long_query_of_the_source_keeps_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync whose read of the source's ids outlasts its lease several times over (a
    large table): its heartbeat renews the lease, so another replica cannot claim it
    meanwhile, and the sync ends as its own."""
    from shipyard.retrieval.source import Reader
    from shipyard.retrieval.sync import Syncer

    path = tmp_path / "content.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, t) for i, t, _, _ in ROWS])
    for env in make_env(tmp_path, kb_lease_seconds=1):
        assert env.admin.post("/api/knowledge-bases", json={"name": "wiki"}).status_code == 201
        source = {"kind": "sqlite", "location": str(path), "table": "docs",
                  "text_column": "body", "interval_seconds": 3600}  # fmt: skip
        assert env.admin.put("/api/knowledge-bases/wiki/source", json=source).status_code == 200
        first = _settled(env, "wiki", 0)

        def slow(self: Reader, ids: Any = Reader.ids) -> Any:
            time.sleep(3.5)
            return ids(self)

        monkeypatch.setattr(Reader, "ids", slow)
        assert env.admin.post("/api/knowledge-bases/wiki/sync").status_code == 202
        deadline = time.monotonic() + 10
        while _status(env, "wiki")["status"] != "syncing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        other = Syncer(env.app.state.platform, enabled=False, lease_s=1)
        until = time.monotonic() + 3
        while time.monotonic() < until:
            assert other._claim() is None  # another replica finds it taken
            time.sleep(0.2)
        status = _settled(env, "wiki", first["syncs"])
        assert status["status"] == "idle" and status["error"] == "", status
        assert status["rows"] == 3
