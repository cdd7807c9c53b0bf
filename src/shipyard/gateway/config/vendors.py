"""Vendor facts, in one table: which provider kind serves a vendor, its default base URL,
and the wire profile an OpenAI-compatible vendor needs. OpenAI-compatible vendors
differ by data, not by code; the LiteLLM importer and provider validation read this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    """How an OpenAI-compatible server differs from OpenAI's own API."""

    paths: dict[str, str] = field(default_factory=dict)  # op -> path template ({model})
    auth: tuple[str, str] = ("Authorization", "Bearer {key}")  # header, value format
    query: dict[str, str] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "openai": Profile(),
    "azure": Profile(
        paths={
            "chat": "/openai/deployments/{model}/chat/completions",
            "completions": "/openai/deployments/{model}/completions",
            "embeddings": "/openai/deployments/{model}/embeddings",
        },
        auth=("api-key", "{key}"),
        query={"api-version": "2024-10-21"},
    ),
}
DEFAULT_PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(frozen=True)
class Vendor:
    kind: str  # the provider kind that serves it
    base_url: str = ""  # "" means the configuration must give one
    options: dict[str, Any] = field(default_factory=dict)


# Keyed by LiteLLM's provider prefix (`openai/gpt-4o`), which is what configs carry.
VENDORS: dict[str, Vendor] = {
    "openai": Vendor("openai", "https://api.openai.com/v1"),
    "text-completion-openai": Vendor("openai", "https://api.openai.com/v1"),
    "azure": Vendor("openai", "", {"profile": "azure"}),
    "anthropic": Vendor("anthropic", "https://api.anthropic.com"),
    "gemini": Vendor("gemini", "https://generativelanguage.googleapis.com"),
    "groq": Vendor("openai", "https://api.groq.com/openai/v1"),
    "mistral": Vendor("openai", "https://api.mistral.ai/v1"),
    "deepseek": Vendor("openai", "https://api.deepseek.com/v1"),
    "together_ai": Vendor("openai", "https://api.together.xyz/v1"),
    "openrouter": Vendor("openai", "https://openrouter.ai/api/v1"),
    "fireworks_ai": Vendor("openai", "https://api.fireworks.ai/inference/v1"),
    "hosted_vllm": Vendor("openai"),
    "ollama": Vendor("openai", "http://localhost:11434/v1"),
    "ollama_chat": Vendor("openai", "http://localhost:11434/v1"),
}


def default_base_url(kind: str) -> str:
    """A provider kind's own vendor's base URL (anthropic, gemini), else ''."""
    vendor = VENDORS.get(kind)
    return vendor.base_url if vendor is not None and vendor.kind == kind != "openai" else ""
