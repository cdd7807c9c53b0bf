"""Rows of the trace store: what makes any span storable on both engines (NUL, lone
surrogates, integers past 64 bits, NaN, deep nesting), a span's row and back, and the
opaque cursors of the store's pages."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

import orjson

from shipyard.errors import InvalidInput
from shipyard.tracing.spans import Span

SPAN_COLUMNS = tuple(f.name for f in fields(Span))
JSON_COLUMNS = frozenset(("attributes", "events", "resource"))
_INT_COLUMNS = frozenset(("start_ns", "end_ns", "input_tokens", "output_tokens"))
INT64 = (-(2**63), 2**63 - 1)


# --- making any span storable ---------------------------------------------------------


def text(value: object) -> str:
    """A string every engine stores: NUL replaced (PostgreSQL refuses it), valid UTF-8
    (a lone surrogate becomes '?')."""
    if type(value) is not str:
        value = "" if value is None else str(value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode()
    return value


def integer(value: object) -> int:
    if type(value) is int:
        found = value
    else:
        try:
            found = int(value)  # type: ignore[call-overload]  # a float, a bool, a digit string
        except (TypeError, ValueError, OverflowError):
            return 0
    return max(INT64[0], min(INT64[1], found))


def real(value: object) -> float:
    try:
        found = float(value)  # type: ignore[arg-type]  # anything float() takes
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return found if math.isfinite(found) else 0.0


def _clean(value: object, depth: int) -> object:
    if value is None or type(value) is bool:
        return value
    if type(value) is str:
        return text(value)
    if type(value) is int:
        return value if INT64[0] <= value <= INT64[1] else str(value)
    if type(value) is float:
        return value if math.isfinite(value) else None
    if depth < 32 and isinstance(value, dict):
        return {text(k): _clean(v, depth + 1) for k, v in value.items()}
    if depth < 32 and isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return text(value)


def json_text(value: object) -> str:
    """JSON that both engines store (no NUL escape: JSONB refuses it; no lone surrogate,
    no integer past 64 bits, no nesting past 32 levels)."""
    try:
        out = orjson.dumps(value, default=text)
    except TypeError:  # orjson.JSONEncodeError: a surrogate, a huge integer, a deep nest
        out = b""
    if not out or b"\\u0000" in out:
        out = orjson.dumps(_clean(value, 0), default=text)
    return out.decode()


_GET = attrgetter(*SPAN_COLUMNS)
_TEXT_AT = tuple(
    i
    for i, n in enumerate(SPAN_COLUMNS)
    if n not in JSON_COLUMNS and n not in _INT_COLUMNS and n not in ("cost_usd", "ttft_ms")
)
# bounds that keep every sum, difference and total inside 64 bits on both engines (a
# hostile span's 2**63 tokens would overflow a trace's total and fail the batch on
# PostgreSQL): times up to 2**62 ns (the year 2116), tokens up to 2**32 a span, cost up
# to 1e9 a span
_TIME_MOST, _TOKENS_MOST, _COST_MOST = 2**62, 2**32, 1e9
_INT_AT = tuple(
    (i, _TIME_MOST if n.endswith("_ns") else _TOKENS_MOST)
    for i, n in enumerate(SPAN_COLUMNS)
    if n in _INT_COLUMNS
)
_JSON_AT = tuple(i for i, n in enumerate(SPAN_COLUMNS) if n in JSON_COLUMNS)
_COST_AT = SPAN_COLUMNS.index("cost_usd")
_TTFT_AT = SPAN_COLUMNS.index("ttft_ms")
_RESOURCE_AT = SPAN_COLUMNS.index("resource")


def prepare(
    span: Span, json_cache: dict[int, tuple[object, str]] | None = None
) -> tuple[Span, tuple[object, ...]]:
    """The span with storable fields (the span itself when it was storable already),
    and its row (JSON fields as text). `json_cache`: JSON already written for values
    (by id) in this batch, for the resource: the spans of one resource share its dict."""
    values = list(_GET(span))
    changed = False
    try:  # the common case at once: every text a str, no NUL, ASCII or valid UTF-8
        joined = "".join([values[i] for i in _TEXT_AT])  # a TypeError if one is not a str
        fine = "\x00" not in joined and (joined.isascii() or _utf8(joined))
    except TypeError:
        fine = False
    for i in () if fine else _TEXT_AT:
        v = values[i]
        if type(v) is not str or "\x00" in v or not (v.isascii() or _utf8(v)):
            values[i] = text(v)
            changed = True
    for i, most in _INT_AT:
        v = values[i]
        if type(v) is not int or not 0 <= v <= most:
            values[i] = max(0, min(most, integer(v)))
            changed = True
    v = values[_COST_AT]
    if type(v) is not float or not 0.0 <= v <= _COST_MOST:
        values[_COST_AT] = max(0.0, min(_COST_MOST, real(v)))
        changed = True
    v = values[_TTFT_AT]
    if v is not None and (type(v) is not float or not 0.0 <= v <= _COST_MOST):
        values[_TTFT_AT] = max(0.0, min(_COST_MOST, real(v)))
        changed = True
    clean = Span(*values) if changed else span
    for i in _JSON_AT:
        value = values[i]
        if not value:
            values[i] = (
                "[]" if type(value) is list else "{}" if type(value) is dict else json_text(value)
            )
        elif json_cache is None or i != _RESOURCE_AT:
            values[i] = json_text(value)
        else:
            known = json_cache.get(id(value))
            if known is None or known[0] is not value:  # an id reused by another object
                known = json_cache[id(value)] = (value, json_text(value))
            values[i] = known[1]
    return clean, tuple(values)


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def span_from_row(row: Sequence[Any]) -> Span:
    values = list(row)
    for i, name in enumerate(SPAN_COLUMNS):
        if name in JSON_COLUMNS and isinstance(values[i], str | bytes):
            values[i] = orjson.loads(values[i])
    return Span(*values)


# --- cursors ----------------------------------------------------------------------------


def encode_cursor(*parts: int | str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).rstrip(b"=").decode()


def decode_cursor(cursor: str, tag: str, *shape: type) -> list[Any]:
    """The parts after the tag of a cursor that `encode_cursor(tag, ...)` made; anything
    else (another list's cursor included) is InvalidInput naming `cursor`."""
    try:
        if type(cursor) is not str or len(cursor) > 400:
            raise ValueError
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(parts, list) and len(parts) == len(shape) + 1 and parts[0] == tag):
            raise ValueError
        parts = parts[1:]
        for part, kind in zip(parts, shape, strict=True):
            if type(part) is not kind:
                raise ValueError
            if kind is int and integer(part) != part:
                raise ValueError
            if kind is str and text(part) != part:
                raise ValueError
    except (ValueError, TypeError):
        raise InvalidInput("not a cursor of this list", param="cursor") from None
    return parts


def page_limit(limit: int, most: int) -> int:
    if type(limit) is not int or limit < 1:
        raise InvalidInput("limit must be a positive integer", param="limit")
    return min(limit, most)
