"""The built-in evaluation scorers, each a `shipyard.plugins.Scorer` registered under
the `shipyard.scorers` entry-point group, and how a run finds one by name."""

from __future__ import annotations

from shipyard.errors import InvalidInput
from shipyard.plugins import SCORERS, Plugins, Scorer

BUILTIN = (
    "exact_match", "contains", "regex", "json_valid", "json_schema", "bleu", "chrf",
    "rouge1", "rouge2", "rougeL", "embedding_similarity", "recall_at_k",
    "precision_at_k", "mrr", "ndcg_at_k", "latency", "cost", "llm_judge",
)  # fmt: skip


def load_scorer(plugins: Plugins, name: str) -> Scorer:
    """A new instance of the scorer registered as `name`."""
    known = plugins.names(SCORERS)
    if name not in known:
        raise InvalidInput(
            f"scorers: no scorer named {name!r} (known: {', '.join(sorted(known))})",
            param="scorers",
        )
    scorer: Scorer = plugins.load(SCORERS, name)()
    return scorer
