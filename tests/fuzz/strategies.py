"""Hypothesis strategies from a JSON Schema: the subset the `/v1` document uses (type,
enum, anyOf, properties and required, additionalProperties, propertyNames, items and
their counts, bounds, lengths, patterns). hypothesis-jsonschema would do this, but its
releases reach into Hypothesis internals that current Hypothesis no longer has."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Schema = dict[str, Any]
MAX_ITEMS = 4  # arrays and free-form objects stay small unless the schema says more
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what orjson writes

# any JSON value, small: what a free-form object (`additionalProperties: true`) holds
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: Schema) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind is None:
        return JSON
    build = _TYPES.get(kind)
    if build is None:
        raise ValueError(f"unsupported schema type {kind!r}")
    return build(schema)


def _string(schema: Schema) -> st.SearchStrategy[str]:
    lo, hi = schema.get("minLength", 0), schema.get("maxLength", 40)
    pattern = schema.get("pattern")
    if pattern is None:
        return st.text(min_size=lo, max_size=hi)
    return st.from_regex(pattern, fullmatch=True).filter(lambda s: lo <= len(s) <= hi)


def _integer(schema: Schema) -> st.SearchStrategy[int]:
    lo, hi = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1)
    return st.integers(min_value=lo, max_value=hi)


def _number(schema: Schema) -> st.SearchStrategy[float | int]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    floats = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
    ints = st.integers(
        min_value=-(2**63) if lo is None else int(lo),
        max_value=2**63 - 1 if hi is None else int(hi),
    )
    return floats | ints


def _array(schema: Schema) -> st.SearchStrategy[list[Any]]:
    lo = schema.get("minItems", 0)
    hi = min(schema.get("maxItems", MAX_ITEMS), max(lo, MAX_ITEMS))
    return st.lists(from_schema(schema.get("items", {})), min_size=lo, max_size=hi)


def _object(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Schema] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):  # a map: keys by `propertyNames`, values by the schema
        keys = _string({"maxLength": 16, **schema.get("propertyNames", {})})
        return st.dictionaries(keys, from_schema(extra), max_size=MAX_ITEMS)
    if not properties:
        return st.dictionaries(st.text(max_size=8), JSON, max_size=MAX_ITEMS)
    return st.fixed_dictionaries(
        {k: from_schema(v) for k, v in properties.items() if k in required},
        optional={k: from_schema(v) for k, v in properties.items() if k not in required},
    )


_TYPES: dict[str, Any] = {
    "null": lambda _: st.none(),
    "boolean": lambda _: st.booleans(),
    "integer": _integer,
    "number": _number,
    "string": _string,
    "array": _array,
    "object": _object,
}
