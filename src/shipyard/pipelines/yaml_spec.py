"""Specs as YAML: read safely (no anchors or aliases, no tags beyond plain data, size
capped), written in a stable order, diffed line by line."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from shipyard.errors import InvalidInput

MAX_CHARS = 256_000


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases: `&a`/`*a` can multiply a small file into a huge
    value (each alias is the same object; writing it out copies it every time)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]  # PyYAML is untyped
            raise InvalidInput(f"yaml: aliases are not allowed (line {line})")
        return super().compose_node(parent, index)


def load(text: str) -> Any:
    if len(text) > MAX_CHARS:
        raise InvalidInput(f"yaml: longer than {MAX_CHARS} characters", param="yaml")
    try:
        value: Any = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "is not valid YAML"
        raise InvalidInput(f"yaml: {problem}{where}", param="yaml") from None
    except RecursionError:
        raise InvalidInput("yaml: nested too deeply", param="yaml") from None
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - a tag's constructor failing: !!int xyz, a bad date
        raise InvalidInput(f"yaml: a value cannot be read ({type(exc).__name__})") from None
    bad = _not_json(value)
    if bad is not None:
        raise InvalidInput(f"yaml: {bad} is not JSON data (a date, a set, binary?)")
    if not isinstance(value, dict):
        raise InvalidInput("yaml: the spec must be a mapping (inputs, steps, output)")
    return value


def _not_json(value: Any, path: str = "(root)", depth: int = 0) -> str | None:
    """Where a value that JSON cannot hold is (a date, a set, bytes, a key that is not a
    string), or None."""
    if depth > 64:
        return path
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else path
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _not_json(v, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} (key {str(k)[:40]})"
            found = _not_json(v, f"{path}.{k[:40]}", depth + 1)
            if found is not None:
                return found
        return None
    return path


def dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


def diff(old: dict[str, Any], new: dict[str, Any], *, a: int, b: int) -> list[str]:
    return list(
        difflib.unified_diff(
            dump(old).splitlines(), dump(new).splitlines(), f"v{a}", f"v{b}", lineterm=""
        )
    )
