"""Prices per 1M tokens, seeded for well-known models and editable through the API
(by platform administrators: the table is shared by every workspace).

A model's price is found by its name, then without a vendor prefix ('openai/gpt-4o'),
then by its family: a dated or versioned snapshot ('gpt-4o-2024-08-06',
'claude-3-5-sonnet-20241022', 'gemini-1.5-pro-002') costs what its family costs. A
model found nowhere has no price (`None`): budgets refuse it rather than count it as
free, unless the table lists it at 0 (an administrator marked it free). Models that run
on this machine (llama.cpp, sentence-transformers) are free."""

from __future__ import annotations

import re
from collections.abc import Iterator

from shipyard.gateway.config.specs import Deployment, Price

# USD per 1M tokens (input, output, cached input). Public list prices; edit via the API.
SEED_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "claude-3-5-haiku-latest": Price(0.80, 4.00, 0.08),
    "claude-3-5-sonnet-latest": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4-0": Price(3.00, 15.00, 0.30),
    "claude-opus-4-0": Price(15.00, 75.00, 1.50),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    "gemini-1.5-pro": Price(1.25, 5.00),
    "mistral-large-latest": Price(2.00, 6.00),
    "deepseek-chat": Price(0.27, 1.10, 0.07),
    "llama-3.1-8b-instant": Price(0.05, 0.08),
}
FREE = Price(0.0, 0.0)
LOCAL_KINDS = frozenset({"llama_cpp", "sentence_transformers"})  # run here: no bill

# trailing date or version stamps: -2024-08-06, -20241022, -0613, -002, -v2:0, @001
_STAMP = re.compile(
    r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|v\d+(?::\d+)?|latest|preview))+$"
)


def _names(model: str) -> Iterator[str]:
    yield model
    short = model.rsplit("/", 1)[-1]
    if short != model:
        yield short
    family = _STAMP.sub("", short)
    if family and family != short:
        yield family
    if family:
        yield family + "-latest"


def price_for(prices: dict[str, Price], model: str) -> Price | None:
    """The model's price by name, vendor-less name or family; None when unknown."""
    for name in _names(model):
        found = prices.get(name)
        if found is not None:
            return found
    return None


def deployment_price(prices: dict[str, Price], dep: Deployment) -> Price | None:
    if dep.provider.kind in LOCAL_KINDS:
        return prices.get(dep.model, FREE)
    return price_for(prices, dep.model)
