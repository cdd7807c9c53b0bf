"""The peer side of bench/evaluation.py, run by it in MLflow's own venv (never imports
Shipyard): the same items scored by `mlflow.genai.evaluate` with code scorers (`@scorer`)
wrapping the same four metrics as Shipyard's built-ins (exact match after stripping,
sacrebleu's sentence BLEU / 100, rouge-score's ROUGE-L F-measure, cosine similarity of
the local MiniLM's normalized embeddings), and the same libraries called in a plain loop
in this venv (the floor here: what the metrics themselves cost in this interpreter).

    python bench/mlflow_scoring.py ITEMS.json MINILM_DIR ROUNDS [each]

Telemetry is off and tracking goes to SQLite in a temporary folder. Prints one JSON
object: per configuration (the four scorers at once; with `each`, also each alone) the
best wall and CPU seconds over the rounds, and each metric's mean.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.update(
    MLFLOW_DISABLE_TELEMETRY="true",
    DO_NOT_TRACK="true",
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    # SQLite under evaluate()'s worker threads: the default pool runs out (traces are then
    # dropped after a 30 s wait each); a connection per use avoids it
    MLFLOW_SQLALCHEMYSTORE_POOLCLASS="NullPool",
)

import mlflow  # noqa: E402
import sacrebleu  # noqa: E402
from mlflow.genai.scorers import scorer  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROUGE = rouge_scorer.RougeScorer(["rougeL"])


def main() -> None:
    items = json.loads(Path(sys.argv[1]).read_text())
    model = SentenceTransformer(sys.argv[2], device="cpu")
    rounds = int(sys.argv[3])

    def embed_cos(out: str, ref: str) -> float:
        a, b = model.encode([out, ref], normalize_embeddings=True, convert_to_numpy=True)
        return float(a @ b)

    @scorer
    def exact_match(outputs: str, expectations: dict[str, Any]) -> float:
        return 1.0 if outputs.strip() == expectations["expected_response"].strip() else 0.0

    @scorer
    def bleu(outputs: str, expectations: dict[str, Any]) -> float:
        ref = expectations["expected_response"]
        return min(1.0, sacrebleu.sentence_bleu(outputs, [ref]).score / 100)

    @scorer
    def rougeL(outputs: str, expectations: dict[str, Any]) -> float:  # noqa: N802
        ref = expectations["expected_response"]
        return float(ROUGE.score_multi([ref], outputs)["rougeL"].fmeasure)

    @scorer
    def embedding_similarity(outputs: str, expectations: dict[str, Any]) -> float:
        return embed_cos(outputs, expectations["expected_response"])

    scorers = {
        "exact_match": exact_match,
        "bleu": bleu,
        "rougeL": rougeL,
        "embedding_similarity": embedding_similarity,
    }
    data = [
        {
            "inputs": it["inputs"],
            "outputs": it["output"],
            "expectations": {"expected_response": it["expected"]},
        }
        for it in items
    ]
    embed_cos("warm", "up")
    sacrebleu.sentence_bleu("warm up", ["warm up"])

    tmp = tempfile.mkdtemp(prefix="mlflow-eval-bench-")
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    mlflow.set_experiment("eval-bench")
    mlflow.genai.evaluate(data=data[:20], scorers=list(scorers.values()))  # untimed warm-up

    out: dict[str, Any] = {
        "mlflow": mlflow.__version__,
        "workers": os.environ.get("MLFLOW_GENAI_EVAL_MAX_WORKERS", "default"),
        "floor": {},
        "mlflow_runs": {},
    }
    plain = {
        "exact_match": lambda o, r: 1.0 if o.strip() == r.strip() else 0.0,
        "bleu": lambda o, r: min(1.0, sacrebleu.sentence_bleu(o, [r]).score / 100),
        "rougeL": lambda o, r: float(ROUGE.score_multi([r], o)["rougeL"].fmeasure),
    }
    each = len(sys.argv) > 4 and sys.argv[4] == "each"
    configs = ([[name] for name in scorers] if each else []) + [list(scorers)]
    for _ in range(rounds):
        for name, fn in plain.items():
            w, c = time.perf_counter(), time.process_time()
            values = [fn(it["output"], it["expected"]) for it in items]
            _best(out["floor"], name, w, c, sum(values) / len(values))
        w, c = time.perf_counter(), time.process_time()
        texts = [t for it in items for t in (it["output"], it["expected"])]
        vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
        sims = [float(vecs[i] @ vecs[i + 1]) for i in range(0, len(vecs), 2)]
        _best(out["floor"], "embedding_similarity", w, c, sum(sims) / len(sims))
        for names in configs:
            w, c = time.perf_counter(), time.process_time()
            result = mlflow.genai.evaluate(data=data, scorers=[scorers[n] for n in names])
            label = names[0] if len(names) == 1 else "all four"
            means = {n: result.metrics.get(f"{n}/mean") for n in names}
            _best(out["mlflow_runs"], label, w, c, means)
    print(json.dumps(out))


def _best(into: dict[str, Any], name: str, wall0: float, cpu0: float, mean: Any) -> None:
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    have = into.get(name)
    if have is None or wall < have["wall_s"]:
        into[name] = {"wall_s": wall, "cpu_s": cpu, "mean": mean}


if __name__ == "__main__":
    main()
