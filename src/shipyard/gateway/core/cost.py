"""Token counting: estimates for reservations, and counts when a provider reports no
usage."""

from __future__ import annotations

import orjson


def estimate_tokens(payload: object) -> int:
    """An upper-leaning estimate for reservations: about 3 bytes a token, plus framing."""
    size = len(payload.encode()) if isinstance(payload, str) else len(orjson.dumps(payload))
    return size // 3 + 8


def count_text_tokens(text: str) -> int:
    """Count tokens of generated text when the provider reports none (streams cut off,
    providers without usage). Uses the local SmolLM2 BPE vocabulary when llama-cpp is
    installed, else the byte estimate."""
    from shipyard.gateway.core.tokenizer import default_tokenizer

    tok = default_tokenizer()
    if tok is None:
        return max(1, len(text.encode()) // 4) if text else 0
    return tok(text)
