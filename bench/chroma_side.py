"""Chroma's side of bench/retrieval.py, run in Chroma's own venv (chromadb pinned there).

    <chroma venv>/bin/python bench/chroma_side.py <folder>

<folder> holds vectors.npy, queries.npy and shard.npy (written by bench/retrieval.py).
Builds an embedded PersistentClient collection (cosine, M=16, ef_construction 100,
ef_search 64, precomputed embeddings, the shard as metadata), prints one JSON line
{"build_s": ...}, then answers lines "<start> <end> <filtered 0|1>" from stdin with one
JSON line {"ids": [[...], ...], "seconds": [...]}: each query timed here, one at a time,
so the pipe between the processes is not in Chroma's figures.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import chromadb
import numpy as np

K = 10


def main() -> None:
    folder = Path(sys.argv[1])
    vectors = np.load(folder / "vectors.npy")
    queries = np.load(folder / "queries.npy")
    shard = np.load(folder / "shard.npy")
    client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="bench-chroma-"))
    hnsw = {"space": "cosine", "max_neighbors": 16, "ef_construction": 100, "ef_search": 64}
    collection = client.create_collection(
        "bench", configuration={"hnsw": hnsw}, embedding_function=None
    )
    step = min(5000, client.get_max_batch_size())
    t = time.perf_counter()
    for start in range(0, len(vectors), step):
        end = min(start + step, len(vectors))
        collection.add(
            ids=[str(i + 1) for i in range(start, end)],
            embeddings=vectors[start:end],
            metadatas=[{"shard": f"s{s}"} for s in shard[start:end]],
        )
    print(json.dumps({"build_s": time.perf_counter() - t}), flush=True)
    for line in sys.stdin:
        start, end, filtered = (int(x) for x in line.split())
        where = {"shard": "s3"} if filtered else None
        ids, seconds = [], []
        for q in queries[start:end]:
            t = time.perf_counter()
            got = collection.query(query_embeddings=[q], n_results=K, where=where, include=[])
            seconds.append(time.perf_counter() - t)
            ids.append([int(i) for i in got["ids"][0]])
        print(json.dumps({"ids": ids, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
