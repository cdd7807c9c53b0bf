"""Dataset files: uploads read (CSV, JSONL) and exports written (JSONL of the items,
OpenAI chat fine-tuning JSONL, DPO preference pairs).

A bad upload is refused whole with the line that is wrong (`line 7: ...`): wrong
columns, a field that is not valid, bad UTF-8, a line that is not JSON. Nothing of it is
written (the caller writes the parsed items as one version, or nothing).

CSV columns:
- `input` (text: inputs `{"input": ...}`), `inputs.<name>` (text: `inputs[name]`) or
  `inputs` (a JSON object); at least one of them;
- `expected` (text; an empty cell: none), `expected_json` (JSON);
- `metadata.<name>` (text), `source_trace_id`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from shipyard.errors import InvalidInput
from shipyard.evaluation.schemas import MAX_CHANGE, ItemIn
from shipyard.evaluation.tables import DatasetItemRow
from shipyard.inputs import invalid

FORMATS = ("jsonl", "csv")
EXPORTS = ("jsonl", "openai", "dpo")
PLAIN = {"input", "inputs", "expected", "expected_json", "source_trace_id"}


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"line {line}: not UTF-8 (byte {exc.start})", param="body") from None


def _item(n: int, value: Any) -> ItemIn:
    try:
        item = ItemIn.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc, f"line {n}") from None
    item.check_size(f"line {n}")
    return item


def _bound(count: int, n: int) -> None:
    if count >= MAX_CHANGE:
        raise InvalidInput(f"line {n}: at most {MAX_CHANGE} items in one upload", param="body")


def parse(data: bytes, fmt: str) -> list[ItemIn]:
    if fmt == "jsonl":
        return parse_jsonl(data)
    if fmt == "csv":
        return parse_csv(data)
    raise InvalidInput(f"format: one of {', '.join(FORMATS)}", param="format")


def parse_jsonl(data: bytes) -> list[ItemIn]:
    """One item per line (`{"inputs": ..., "expected": ..., "metadata": ...}`); blank
    lines are skipped."""
    text = _decode(data)
    out: list[ItemIn] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        _bound(len(out), n)
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"line {n}: not JSON ({exc.msg})", param="body") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"line {n}: each line is a JSON object", param="body")
        out.append(_item(n, value))
    if not out:
        raise InvalidInput("the file holds no items", param="body")
    return out


def _columns(header: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InvalidInput(f"line 1: the column '{name[:64]}' appears twice", param="body")
        seen.add(name)
        if name in PLAIN:
            continue
        prefix, dot, rest = name.partition(".")
        if dot and rest and prefix in {"inputs", "metadata"}:
            continue
        raise InvalidInput(
            f"line 1: unknown column '{name[:64]}'; the columns are input, inputs, "
            "inputs.<name>, expected, expected_json, metadata.<name>, source_trace_id",
            param="body",
        )
    if not any(c == "input" or c.startswith("inputs") for c in header):
        raise InvalidInput(
            "line 1: no input column: give input, inputs or inputs.<name>", param="body"
        )


def parse_csv(data: bytes) -> list[ItemIn]:
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("line 1: the file is empty", param="body") from None
    except csv.Error as exc:
        raise InvalidInput(f"line 1: {exc}", param="body") from None
    header = [h.strip() for h in header]
    _columns(header)
    out: list[ItemIn] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidInput(f"line {reader.line_num}: {exc}", param="body") from None
        n = reader.line_num
        if not row or all(not cell for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"line {n}: {len(row)} fields, the header has {len(header)}", param="body"
            )
        _bound(len(out), n)
        out.append(_item(n, _csv_item(n, dict(zip(header, row, strict=True)))))
    if not out:
        raise InvalidInput("the file holds no items", param="body")
    return out


def _csv_item(n: int, cells: dict[str, str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    value: dict[str, Any] = {"inputs": inputs, "metadata": {}}
    for name, cell in cells.items():
        if name == "inputs":
            if cell:
                try:
                    parsed = orjson.loads(cell)
                except orjson.JSONDecodeError:
                    raise InvalidInput(f"line {n}: inputs is not JSON", param="body") from None
                if not isinstance(parsed, dict):
                    raise InvalidInput(f"line {n}: inputs is a JSON object", param="body")
                inputs.update(parsed)
        elif name == "input":
            inputs["input"] = cell
        elif name.startswith("inputs."):
            inputs[name[7:]] = cell
        elif name.startswith("metadata."):
            if cell:
                value["metadata"][name[9:]] = cell
        elif name == "expected":
            if cell:
                value["expected"] = cell
        elif name == "expected_json":
            if cell:
                try:
                    value["expected"] = orjson.loads(cell)
                except orjson.JSONDecodeError:
                    raise InvalidInput(
                        f"line {n}: expected_json is not JSON", param="body"
                    ) from None
        elif name == "source_trace_id" and cell:
            value["source_trace_id"] = cell
    return value


# Exports ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def prompt_messages(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages an item's inputs stand for: its `messages`, else a user message
    of its `input` / `question` / `prompt` (or of all its inputs as JSON), after a
    `system` input when it has one."""
    messages = inputs.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return [m for m in messages]
    out: list[dict[str, Any]] = []
    if isinstance(inputs.get("system"), str):
        out.append({"role": "system", "content": inputs["system"]})
    for key in ("input", "question", "prompt", "query"):
        if key in inputs:
            out.append({"role": "user", "content": _text(inputs[key])})
            return out
    rest = {k: v for k, v in inputs.items() if k != "system"}
    only = next(iter(rest.values())) if len(rest) == 1 else rest
    out.append({"role": "user", "content": _text(only)})
    return out


def _line(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


def export(rows: Sequence[DatasetItemRow], fmt: str) -> tuple[list[bytes], int]:
    """(the lines, how many items had nothing to export in this format)."""
    if fmt == "jsonl":
        lines = [
            _line(
                {
                    "id": r.key,
                    "inputs": r.inputs,
                    "expected": r.expected,
                    "metadata": r.metadata_,
                    "source_trace_id": r.source_trace_id,
                }
            )
            for r in rows
        ]
        return lines, 0
    if fmt == "openai":
        lines = list(_openai(rows))
        return lines, len(rows) - len(lines)
    if fmt == "dpo":
        lines = list(_pairs(rows))
        return lines, 0
    raise InvalidInput(f"format: one of {', '.join(EXPORTS)}", param="format")


def _openai(rows: Sequence[DatasetItemRow]) -> Iterator[bytes]:
    """OpenAI chat fine-tuning: `{"messages": [..., {"role": "assistant", ...}]}` for
    every item with an expected output (the others have nothing to teach)."""
    for r in rows:
        if r.expected is None:
            continue
        messages = [m for m in prompt_messages(r.inputs) if m.get("role") != "assistant"]
        messages.append({"role": "assistant", "content": _text(r.expected)})
        yield _line({"messages": messages})


def _pairs(rows: Sequence[DatasetItemRow]) -> Iterator[bytes]:
    """Preference pairs for DPO (TRL's conversational shape: `prompt`, `chosen`,
    `rejected`): an item's expected output over what a correction or thumbs down
    rejected (`metadata.rejected`); and across items of the same inputs, one liked
    (thumbs up) over one rejected."""
    liked: dict[bytes, str] = {}
    rejected: dict[bytes, list[str]] = {}
    seen: set[tuple[bytes, str, str]] = set()

    def pair(key: bytes, prompt: list[dict[str, Any]], chosen: str, worse: str) -> Iterator[bytes]:
        if chosen == worse or (key, chosen, worse) in seen:
            return
        seen.add((key, chosen, worse))
        yield _line(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": worse}],
            }
        )

    prompts: dict[bytes, list[dict[str, Any]]] = {}
    for r in rows:
        key = orjson.dumps(r.inputs, option=orjson.OPT_SORT_KEYS)
        prompts[key] = prompt_messages(r.inputs)
        meta = r.metadata_ or {}
        worse = meta.get("rejected")
        if r.expected is not None and isinstance(worse, str):
            yield from pair(key, prompts[key], _text(r.expected), worse)
        if isinstance(worse, str):
            rejected.setdefault(key, []).append(worse)
        thumbs = meta.get("thumbs")
        if r.expected is not None and isinstance(thumbs, int) and thumbs > 0:
            liked.setdefault(key, _text(r.expected))
    for key, chosen in liked.items():
        for worse in rejected.get(key, []):
            yield from pair(key, prompts[key], chosen, worse)
