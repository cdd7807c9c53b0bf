"""What every `/api` input model shares (`Strict`): unknown fields are refused, and so
are values no store or writer can take back:

- a NUL character in any string, keys included (PostgreSQL text cannot hold one: the
  write would fail as a 500, or take a batch down with it);
- free-form JSON (provider options, deployment params) nested deeper than `MAX_DEPTH`
  (orjson, which writes every reply, stops at 255 levels: the object would be stored
  and every later listing of it would fail), or holding an integer orjson cannot write
  (outside 64 bits).

Timestamps (`Timestamp`) need a zone: one without is refused (422) rather than guessed,
since the store compares them in UTC; they are converted to UTC here, so one that has no
UTC equivalent (year 9999 at -01:00) is refused too, not failed on by the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
)

from shipyard.errors import InvalidInput

MAX_DEPTH = 32


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[AwareDatetime, AfterValidator(_utc)]


def check_value(value: Any, depth: int = 0) -> None:
    """Raise ValueError for a NUL in a string, nesting past `MAX_DEPTH`, or an integer
    outside the signed 64-bit range (orjson, which writes every reply and sizes stored
    JSON, cannot write one)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, dict | list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            raise ValueError(f"must nest at most {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for key, child in items:
            if isinstance(key, str) and "\x00" in key:
                raise ValueError("must not contain NUL characters (in a key)")
            check_value(child, depth + 1)


def invalid(exc: ValidationError, where: str = "") -> InvalidInput:
    """A pydantic error as the one InvalidInput: each problem named by its field (under
    `where`, when the model sits inside something larger), the first as `param`."""
    parts, first = [], None
    for error in exc.errors():
        loc = ".".join(map(str, (where, *error["loc"]) if where else error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
        first = first or loc or None
    return InvalidInput("; ".join(parts)[:2000], param=first)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        check_value(value)
        return value
