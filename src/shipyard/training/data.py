"""Training files: JSONL checked line by line, an error naming the first bad line.

Supervised (OpenAI's chat format), one example a line:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}

Preference pairs (`method: dpo`; OpenAI's format):

    {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

Both are what the evaluation capability's exports write (chat JSONL, preference pairs).
"""

from __future__ import annotations

from typing import Any

import orjson

from shipyard.errors import InvalidInput

ROLES = ("system", "user", "assistant")
MAX_LINES = 100_000
SUPERVISED, DPO = "supervised", "dpo"


def _text(content: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} is a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ValueError(f"{where}[{i}] needs a role of {', '.join(ROLES)}")
        text = _text(m.get("content"))
        if text is None:
            raise ValueError(f"{where}[{i}].content is text")
        out.append({"role": m["role"], "content": text})
    return out


def supervised(row: Any) -> list[dict[str, str]]:
    if not isinstance(row, dict) or "messages" not in row:
        raise ValueError("a line is an object with 'messages'")
    messages = _messages(row["messages"], "messages")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("messages hold no assistant message to learn")
    return messages


def preference(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("input"), dict):
        raise ValueError(
            "a line is an object with 'input', 'preferred_output', 'non_preferred_output'"
        )
    prompt = _messages(row["input"].get("messages"), "input.messages")
    chosen = _messages(row.get("preferred_output"), "preferred_output")
    rejected = _messages(row.get("non_preferred_output"), "non_preferred_output")
    for name, side in (("preferred_output", chosen), ("non_preferred_output", rejected)):
        if side[-1]["role"] != "assistant":
            raise ValueError(f"{name} ends with an assistant message")
    return {"prompt": prompt, "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]}


def read(data: bytes, method: str = SUPERVISED, *, name: str = "file") -> list[Any]:
    """Every example of a JSONL file, or a 400 naming the first bad line."""
    check = preference if method == DPO else supervised
    out: list[Any] = []
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        if len(out) >= MAX_LINES:
            raise InvalidInput(f"{name}: more than {MAX_LINES:,} examples", param="file")
        try:
            out.append(check(orjson.loads(line)))
        except orjson.JSONDecodeError:
            raise InvalidInput(f"{name}: line {n} is not JSON", param="file") from None
        except ValueError as exc:
            raise InvalidInput(f"{name}: line {n}: {exc}", param="file") from None
    if not out:
        raise InvalidInput(f"{name}: holds no examples", param="file")
    return out


def method_of(data: bytes) -> str:
    """The kind of examples a valid training file holds (its first line tells)."""
    for line in data.splitlines():
        if line.strip():
            try:
                first = orjson.loads(line)
            except orjson.JSONDecodeError:
                return SUPERVISED
            return DPO if isinstance(first, dict) and "preferred_output" in first else SUPERVISED
    return SUPERVISED
