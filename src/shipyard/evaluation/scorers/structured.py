"""Structured output: JSON validity, and a match against a JSON schema.

Schemas run safely whoever wrote them: `pattern` runs on RE2 (linear time; a pattern
RE2 cannot compile is refused), `patternProperties` is refused (jsonschema would run it
on Python's backtracking `re`), and a `$ref` resolves within the schema only (never
fetched). A `$ref` loop or a too deeply nested output scores None, with the reason."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
import re2
from pydantic import Field, ValidationInfo, field_validator, model_validator

from shipyard.evaluation.scorers.base import NoConfig, PerItem
from shipyard.evaluation.scorers.text import compile_re2, utf8
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score

FENCE = "```"
DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "dependentSchemas"})


def parse_json(output: Any) -> tuple[Any, str]:
    """(value, "") when the output is JSON (a ```json fenced block counts; a structured
    output already is), else (None, why not)."""
    if not isinstance(output, str):
        return output, ""
    text = output.strip()
    if text.startswith(FENCE):
        body = text[len(FENCE) :]
        end = body.rfind(FENCE)
        body = body[:end] if end >= 0 else body
        first, _, rest = body.partition("\n")
        text = rest if first.strip().lower() in ("json", "") else body
    try:
        return orjson.loads(text), ""
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {str(exc)[:200]}"


def _re2_pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    """JSON Schema's `pattern` keyword on RE2 (linear time), not Python's `re`."""
    from jsonschema.exceptions import ValidationError

    if not (validator.is_type(instance, "string") and isinstance(pattern, str)):
        return
    if compile_re2(pattern).search(utf8(instance)) is None:
        yield ValidationError(f"{instance[:100]!r} does not match {pattern!r}")


@lru_cache(maxsize=16)
def _validator_class(base: Any) -> Any:
    from jsonschema import validators

    return validators.extend(base, {"pattern": _re2_pattern})


def _keyword_problem(schema: Any, depth: int = 0) -> str:
    """Why a keyword of `schema` cannot be run safely ("" when none): a `pattern` that
    RE2 cannot compile, or `patternProperties` (which jsonschema runs on Python's
    backtracking `re`: refused). Values of const/enum/default/examples are data, not
    schema, and are not read."""
    if depth > 64:
        return "nests too deeply"
    if isinstance(schema, list):
        for item in schema:
            if why := _keyword_problem(item, depth + 1):
                return why
        return ""
    if not isinstance(schema, dict):
        return ""
    for key, value in schema.items():
        if key in DATA_KEYWORDS:
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            value = list(value.values())  # the names are data; the values are schemas
        if key == "patternProperties":
            return "patternProperties: is not supported (use propertyNames with a pattern)"
        if key == "pattern" and isinstance(value, str):
            try:
                compile_re2(value)
            except UnicodeEncodeError:
                return "pattern: is not valid Unicode (a lone surrogate)"
            except re2.error:
                return f"pattern: {value[:100]!r} is not a valid RE2 pattern"
        elif why := _keyword_problem(value, depth + 1):
            return why
    return ""


def schema_problem(schema: Any) -> str:
    """Why `schema` is not a JSON schema this scorer runs ("" when it is)."""
    import jsonschema

    if not isinstance(schema, dict | bool):
        return "must be a JSON object"
    if isinstance(schema, dict) and "$schema" in schema:
        known = isinstance(schema["$schema"], str) and (
            jsonschema.validators.validator_for(schema, default=None) is not None
        )
        if not known:
            return f"$schema: {str(schema['$schema'])[:200]!r} is not a known JSON Schema draft"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"is not a valid JSON schema: {exc.message[:300]}"
    except RecursionError:
        return "nests too deeply"
    return _keyword_problem(schema)


def validate(schema: Any, value: Any) -> Score:
    """1.0 when `schema` (already checked by `schema_problem`) accepts `value`."""
    import jsonschema
    import referencing
    from referencing.exceptions import Unresolvable

    cls = _validator_class(jsonschema.validators.validator_for(schema))
    # An empty registry: a `$ref` resolves within the schema only (jsonschema's default
    # would fetch any URL from the server).
    validator = cls(schema, registry=referencing.Registry())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Unresolvable as exc:
        return Score(None, f"schema: a $ref cannot be resolved ({str(exc)[:200]})")
    except RecursionError:
        return Score(None, "schema: recursion too deep (a $ref loop, or a deeply nested output)")
    if error is None:
        return Score(1.0)
    place = "/".join(map(str, error.absolute_path)) or "(root)"
    return Score(0.0, f"{place}: {error.message[:300]}")


class JsonValid(PerItem[NoConfig]):
    """1.0 when the output parses as JSON."""

    name = "json_valid"
    config_model = NoConfig

    def one(self, case: Case, config: NoConfig) -> Score:
        _, why = parse_json(case.output)
        return Score(0.0, why) if why else Score(1.0)


class JsonSchemaConfig(Strict):
    schema_from_expected: bool = False  # each case's expected value is its schema
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="before")
    @classmethod
    def _given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema" not in data:
            data = {**data, "schema": None}  # checked below, and named by its alias
        return data

    @field_validator("schema_")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if schema is None:
            if not info.data.get("schema_from_expected"):
                raise ValueError("required (or set schema_from_expected)")
            return None
        if why := schema_problem(schema):
            raise ValueError(why)
        return schema


class JsonSchema(PerItem[JsonSchemaConfig]):
    """1.0 when the output is JSON that the schema accepts; the reason names the first
    problem's place."""

    name = "json_schema"
    config_model = JsonSchemaConfig

    def one(self, case: Case, config: JsonSchemaConfig) -> Score:
        schema = config.schema_
        if config.schema_from_expected:
            schema = case.expected
            if why := schema_problem(schema):
                return Score(None, f"expected {why}")
        value, why = parse_json(case.output)
        if why:
            return Score(0.0, why)
        return validate(schema, value)
