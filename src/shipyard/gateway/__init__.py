"""The LLM gateway: OpenAI- and Anthropic-compatible `/v1` over many providers, with
routing, retries, fallbacks, cooldowns, limits, budgets, caching, cost and records."""
