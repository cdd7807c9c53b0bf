"""Knowledge-base ingestion against its floor: the embedding model. Prints figures;
asserts nothing.

A real server (`shipyard up`, embedded defaults, the local all-MiniLM-L6-v2 route)
takes `--docs` generated documents of about `--chunks-per-doc` chunks each (200-token
recursive chunks: about 10,000 chunks by default) in one request; the time is taken
until the ingestion is done (parsed, chunked, embedded through the gateway, written,
indexed by vector and text). The floor: bare sentence-transformers embedding the very
chunk texts the server stored (read from its database afterwards) in calls of 128 texts,
the indexer's batch. Target: ingestion >= 0.9x the floor's chunks/s.

    .venv/bin/python bench/ingestion.py --docs 500 --chunks-per-doc 20
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import minilm_rate, shipyard_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["refunds", "shipping", "warranty", "accounts", "billing", "returns", "privacy",
          "support hours", "gift cards", "loyalty points"]  # fmt: skip
VERBS = ["explains", "describes", "covers", "lists", "summarises", "clarifies"]
NOUNS = ["the policy", "each step", "the exceptions", "the deadlines", "what to send",
         "who to contact", "the fees", "the forms", "the limits", "the timeline"]  # fmt: skip


def paragraph(rng: random.Random, topic: str) -> str:
    sentences = []
    for _ in range(9):  # ~150 tokens: one paragraph per 200-token chunk, near enough
        sentences.append(
            f"This section on {topic} {rng.choice(VERBS)} {rng.choice(NOUNS)} and "
            f"{rng.choice(NOUNS)} for case {rng.randrange(10_000)}."
        )
    return " ".join(sentences)


def documents(n: int, per_doc: int) -> list[dict[str, str]]:
    rng = random.Random(15)
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = "\n\n".join(paragraph(rng, topic) for _ in range(per_doc))
        out.append({"name": f"doc-{i:05d}.txt", "text": text})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--chunks-per-doc", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipyard-ingest-bench-"))
    docs = documents(args.docs, args.chunks_per_doc)
    try:
        with shipyard_up(work) as c:
            print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
            c.post("/api/knowledge-bases", json={"name": "warm"}).raise_for_status()
            warm = {"documents": [{"name": "w.txt", "text": "warm up the model"}]}
            r = c.post("/api/knowledge-bases/warm/documents", json=warm)
            wait(c, "warm", r.json()["ingestion"]["id"])
            c.post("/api/knowledge-bases", json={"name": "bench"}).raise_for_status()
            began = time.perf_counter()
            ids = []
            for start in range(0, len(docs), 100):  # ~1.2 MB a request
                batch = {"documents": docs[start : start + 100]}
                r = c.post("/api/knowledge-bases/bench/documents", json=batch)
                r.raise_for_status()
                ids.append(r.json()["ingestion"]["id"])
            for ingestion in ids:
                wait(c, "bench", ingestion)
            took = time.perf_counter() - began
            chunks = c.get("/api/knowledge-bases/bench").json()["chunks"]
        with sqlite3.connect(work / "home" / "shipyard.db") as conn:
            texts = [t for (t,) in conn.execute(
                "SELECT c.text FROM kb_chunks c JOIN knowledge_bases k ON k.id = c.kb_id "
                "WHERE k.name = 'bench' ORDER BY c.id")]  # fmt: skip
        rate = chunks / took
        print(f"{len(docs):,} documents, {chunks:,} chunks ingested in {took:.1f} s: "
              f"{rate:.0f} chunks/s")  # fmt: skip
        bare = minilm_rate(texts)
        print(f"floor, bare sentence-transformers on the same {len(texts):,} texts in calls "
              f"of 128: {bare:.0f} chunks/s")  # fmt: skip
        print(f"ingestion / floor: {rate / bare:.2f}x (target >= 0.9x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wait(c: httpx.Client, kb: str, ingestion: str) -> None:
    while True:
        got = c.get(f"/api/knowledge-bases/{kb}/ingestions/{ingestion}").json()
        if got["status"] in ("done", "failed", "cancelled"):
            if got["status"] != "done":
                raise SystemExit(f"ingestion {got['status']}: {got}")
            return
        time.sleep(0.2)


if __name__ == "__main__":
    main()
