"""Ingestion as a background job: documents queued on a server that indexes nothing are
indexed by the next one that does (resume after a restart); a document whose worker
died is taken up again when its lease passes; a cancelled ingestion indexes nothing
more; a revoked key fails its documents rather than embedding as it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from shipyard.retrieval.tables import DocumentRow
from shipyard.store import utcnow
from tests.conftest import as_key, key_for
from tests.gateway.conftest import make_env
from tests.retrieval.support import wait_indexed

DOCS = [{"name": f"d{n}.txt", "text": f"Document number {n} is about topic {n}."} for n in range(5)]


def test_queued_documents_are_indexed_after_a_restart_and_a_dead_lease_passes(
    tmp_path: Path,
) -> None:
    for env in make_env(tmp_path, kb_index_workers=0):
        assert env.admin.post("/api/knowledge-bases", json={"name": "kb"}).status_code == 201
        r = env.admin.post("/api/knowledge-bases/kb/documents", json={"documents": DOCS})
        assert r.status_code == 202, r.text
        job = r.json()["ingestion"]["id"]
        time.sleep(0.3)
        got = env.admin.get(f"/api/knowledge-bases/kb/ingestions/{job}").json()
        assert got["status"] == "queued" and got["counts"] == {"queued": 5}
        # one document looks claimed by a worker that was killed a while ago
        with env.app.state.platform.db.transaction() as s:
            s.execute(
                update(DocumentRow)
                .where(DocumentRow.name == "d0.txt")
                .values(
                    status="indexing", worker="wk_dead", lease_until=utcnow() - timedelta(seconds=1)
                )
            )
    for env in make_env(tmp_path, kb_index_workers=2):
        done = wait_indexed(env.admin, "kb", job)
        assert done["status"] == "done" and done["counts"] == {"indexed": 5}, done
        r = env.admin.post("/api/knowledge-bases/kb/search", json={"query": "topic 3", "k": 1})
        assert r.json()["hits"][0]["document"] == "d3.txt"


def test_a_cancelled_ingestion_indexes_nothing_more(tmp_path: Path) -> None:
    for env in make_env(tmp_path, kb_index_workers=0):
        env.admin.post("/api/knowledge-bases", json={"name": "kb"})
        job = env.admin.post("/api/knowledge-bases/kb/documents", json={"documents": DOCS}).json()
        path = f"/api/knowledge-bases/kb/ingestions/{job['ingestion']['id']}"
        r = env.admin.post(f"{path}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert r.json()["counts"] == {"cancelled": 5}
        assert env.admin.post(f"{path}/cancel").status_code == 409
    for env in make_env(tmp_path, kb_index_workers=2):
        time.sleep(1.5)
        assert env.admin.get("/api/knowledge-bases/kb").json()["chunks"] == 0
        docs = env.admin.get("/api/knowledge-bases/kb/documents").json()
        assert {d["status"] for d in docs} == {"cancelled"}
        # added again, a cancelled document is indexed
        again = env.admin.post("/api/knowledge-bases/kb/documents", json={"documents": DOCS[:1]})
        assert again.json()["queued"] == ["d0.txt"]
        assert wait_indexed(env.admin, "kb", again.json()["ingestion"]["id"])["status"] == "done"


def test_a_revoked_key_fails_its_documents(tmp_path: Path) -> None:
    for env in make_env(tmp_path, kb_index_workers=0):
        dev_key = key_for(env.admin, "developer")  # type: ignore[arg-type]
        dev = as_key(dev_key)
        env.admin.post("/api/knowledge-bases", json={"name": "kb"})
        r = env.admin.post(
            "/api/knowledge-bases/kb/documents", json={"documents": DOCS[:2]}, headers=dev
        )
        assert r.status_code == 202, r.text
        job = r.json()["ingestion"]["id"]
        keys = env.admin.get("/api/keys").json()
        kid = next(k["id"] for k in keys if k["name"] == "developer-key")
        assert env.admin.delete(f"/api/keys/{kid}").status_code in (200, 204)
    for env in make_env(tmp_path, kb_index_workers=2):
        done = wait_indexed(env.admin, "kb", job)
        assert done["status"] == "failed" and done["counts"] == {"failed": 2}, done
        docs = env.admin.get("/api/knowledge-bases/kb/documents").json()
        assert all("revoked" in d["error"] and d["error"].startswith(d["name"]) for d in docs)


def test_many_small_documents_are_embedded_together_in_few_calls(tmp_path: Path) -> None:
    docs = [{"name": f"row{n}.txt", "text": f"Row {n} talks about item {n}."} for n in range(70)]
    for env in make_env(tmp_path):
        assert env.admin.post("/api/knowledge-bases", json={"name": "kb"}).status_code == 201
        r = env.admin.post("/api/knowledge-bases/kb/documents", json={"documents": docs})
        assert r.status_code == 202, r.text
        done = wait_indexed(env.admin, "kb", r.json()["ingestion"]["id"])
        assert done["status"] == "done" and done["counts"] == {"indexed": 70}, done
        assert env.admin.get("/api/knowledge-bases/kb").json()["chunks"] == 70
        hits = env.admin.post(
            "/api/knowledge-bases/kb/search", json={"query": "item 42", "mode": "lexical"}
        ).json()["hits"]
        assert hits[0]["document"] == "row42.txt"
        # the embedding calls, as the gateway recorded them: a few groups, not one a row
        deadline = time.monotonic() + 20
        while True:
            calls = env.admin.get(
                "/api/gateway/requests", params={"route": "all-minilm-l6-v2"}
            ).json()
            if calls or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert 1 <= len(calls) <= 10, len(calls)
