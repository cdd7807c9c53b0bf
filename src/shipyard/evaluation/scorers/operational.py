"""What an answer cost: its latency and its price (lower is better)."""

from __future__ import annotations

from shipyard.evaluation.scorers.base import NoConfig, PerItem
from shipyard.plugins import Case, Score


class Latency(PerItem[NoConfig]):
    """The answer's latency in milliseconds."""

    name = "latency"
    config_model = NoConfig
    higher_is_better = False

    def one(self, case: Case, config: NoConfig) -> Score:
        if case.latency_ms is None:
            return Score(None, "no latency recorded")
        return Score(float(case.latency_ms))


class Cost(PerItem[NoConfig]):
    """The answer's cost in USD."""

    name = "cost"
    config_model = NoConfig
    higher_is_better = False

    def one(self, case: Case, config: NoConfig) -> Score:
        if case.cost_usd is None:
            return Score(None, "no cost recorded")
        return Score(float(case.cost_usd))
