"""What every `/api` input model shares (`Strict`): unknown fields are refused, and so
are values no store or writer can take back:

- a NUL character in any string, keys included (PostgreSQL text cannot hold one: the
  write would fail as a 500, or take a batch down with it);
- free-form JSON (provider options, deployment params) nested deeper than `MAX_DEPTH`
  (orjson, which writes every reply, stops at 255 levels: the object would be stored
  and every later listing of it would fail).

Timestamps are `AwareDatetime` (`Timestamp`): one without a zone is refused (422) rather
than guessed, since the store compares them in UTC."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

MAX_DEPTH = 32
Timestamp = AwareDatetime


def check_value(value: Any, depth: int = 0) -> None:
    """Raise ValueError for a NUL in a string or nesting past `MAX_DEPTH`."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            raise ValueError(f"must nest at most {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for key, child in items:
            if isinstance(key, str) and "\x00" in key:
                raise ValueError("must not contain NUL characters (in a key)")
            check_value(child, depth + 1)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        check_value(value)
        return value
