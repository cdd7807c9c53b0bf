"""Prices per 1M tokens, seeded for well-known models and editable through the API."""

from __future__ import annotations

from shipyard.gateway.config.specs import Price

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


def price_for(prices: dict[str, Price], model: str) -> Price:
    """Exact name, then without a vendor prefix ('openai/gpt-4o'), else free."""
    if model in prices:
        return prices[model]
    short = model.rsplit("/", 1)[-1]
    return prices.get(short, FREE)
