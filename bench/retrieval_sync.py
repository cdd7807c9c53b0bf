"""Table-synced knowledge bases: how soon a changed row is searchable. Prints figures;
asserts nothing.

A real server (`shipyard up`, embedded defaults, the local MiniLM route) follows a
table of `--rows` rows in a SQLite file in continuous mode (a sync every second). After
the first sync is indexed, `--changes` times in turn: a row is updated, a row inserted,
or a row deleted (each with a word no other row has), and the time is taken until a
full-text search shows the change (polled every 20 ms). The target is 2 s; the floor is
the sync interval (a change waits on average half of it for the next sync, then its
document is chunked, embedded and indexed). The first sync's rows/s is printed beside
bare sentence-transformers embedding the same texts in batches of 128 (the floor).

    .venv/bin/python bench/retrieval_sync.py --rows 1000 --changes 30
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import minilm_rate, shipyard_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]
TARGET_S = 2.0


def text(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(16)
    work = Path(tempfile.mkdtemp(prefix="shipyard-sync-bench-"))
    db = work / "source" / "articles.db"
    db.parent.mkdir()
    rows = [(i, text(rng), time.time()) for i in range(1, args.rows + 1)]
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, body TEXT, updated_at REAL)")
        conn.executemany("INSERT INTO articles VALUES (?, ?, ?)", rows)
    args.floor = minilm_rate([r[1] for r in rows])
    try:
        with shipyard_up(work) as c:
            run(c, db, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(c: httpx.Client, db: Path, args: argparse.Namespace) -> None:
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
    assert c.post("/api/knowledge-bases", json={"name": "articles"}).status_code == 201
    began = time.perf_counter()
    r = c.put(
        "/api/knowledge-bases/articles/source",
        json={
            "kind": "sqlite",
            "location": str(db),
            "table": "articles",
            "text_column": "body",
            "updated_column": "updated_at",
            "mode": "continuous",
        },
    )
    r.raise_for_status()
    while True:
        got = c.get("/api/knowledge-bases/articles/source").json()
        if got["syncs"] and not got["pending"] and got["status"] != "syncing":
            break
        time.sleep(0.2)
    first = time.perf_counter() - began
    print(f"first sync of {args.rows:,} rows, embedded and indexed: {first:.1f} s "
          f"({args.rows / first:,.0f} rows/s); floor, bare sentence-transformers on the "
          f"same texts: {args.floor:,.0f} rows/s; Shipyard / floor "
          f"{args.rows / first / args.floor:.2f}x")  # fmt: skip

    def visible(word: str) -> bool:
        hits = c.post(
            "/api/knowledge-bases/articles/search",
            json={"query": word, "mode": "lexical", "k": 1},
        ).json()["hits"]
        return bool(hits) and word in hits[0]["text"]

    rng = random.Random(7)
    latencies: dict[str, list[float]] = {"update": [], "insert": [], "delete": []}
    next_id = args.rows + 1
    last_insert = (0, "")
    for n in range(args.changes):
        kind = ("update", "insert", "delete")[n % 3]
        word = f"zq{n:04d}marker"
        with sqlite3.connect(db) as conn:
            if kind == "delete":
                # delete the row the previous change inserted (its word is searchable)
                victim, word = last_insert
                conn.execute("DELETE FROM articles WHERE id = ?", (victim,))
            elif kind == "update":
                row = rng.randint(1, args.rows)
                conn.execute(
                    "UPDATE articles SET body = ?, updated_at = ? WHERE id = ?",
                    (f"{text(rng, 20)} {word}", time.time(), row),
                )
            else:
                conn.execute(
                    "INSERT INTO articles VALUES (?, ?, ?)",
                    (next_id, f"{text(rng, 20)} {word}", time.time()),
                )
                last_insert = (next_id, word)
                next_id += 1
        t = time.perf_counter()
        while visible(word) == (kind == "delete"):
            if time.perf_counter() - t > 30:
                raise SystemExit(f"{kind} {word} not picked up in 30 s")
            time.sleep(0.02)
        latencies[kind].append(time.perf_counter() - t)
    print(f"\n{'change':8} {'n':>3} {'p50 s':>7} {'max s':>7}  (target {TARGET_S:.0f} s; "
          "floor: the 1 s sync interval)")  # fmt: skip
    every: list[float] = []
    for kind, values in latencies.items():
        every += values
        print(f"{kind:8} {len(values):3} {statistics.median(values):7.2f} {max(values):7.2f}")
    worst = max(every)
    print(f"all      {len(every):3} {statistics.median(every):7.2f} {worst:7.2f}")
    print(f"worst / target: {worst / TARGET_S:.2f}x; median / interval: "
          f"{statistics.median(every) / 1.0:.2f}x")  # fmt: skip
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")


if __name__ == "__main__":
    main()
