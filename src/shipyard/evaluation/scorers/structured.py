"""Structured output: JSON validity, and a match against a JSON schema."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field, model_validator

from shipyard.evaluation.scorers.base import NoConfig, PerItem
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score

FENCE = "```"


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


def schema_problem(schema: Any) -> str:
    """Why `schema` is not a valid JSON schema ("" when it is)."""
    import jsonschema

    if not isinstance(schema, dict | bool):
        return "must be a JSON object"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"is not a valid JSON schema: {exc.message[:300]}"
    return ""


class JsonValid(PerItem[NoConfig]):
    """1.0 when the output parses as JSON."""

    name = "json_valid"
    config_model = NoConfig

    def one(self, case: Case, config: NoConfig) -> Score:
        _, why = parse_json(case.output)
        return Score(0.0, why) if why else Score(1.0)


class JsonSchemaConfig(Strict):
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_from_expected: bool = False  # each case's expected value is its schema

    @model_validator(mode="after")
    def _schema(self) -> JsonSchemaConfig:
        if self.schema_ is None and not self.schema_from_expected:
            raise ValueError("schema: required (or set schema_from_expected)")
        if self.schema_ is not None and (why := schema_problem(self.schema_)):
            raise ValueError(f"schema: {why}")
        return self


class JsonSchema(PerItem[JsonSchemaConfig]):
    """1.0 when the output is JSON that the schema accepts; the reason names the first
    problem's place."""

    name = "json_schema"
    config_model = JsonSchemaConfig

    def one(self, case: Case, config: JsonSchemaConfig) -> Score:
        import jsonschema

        schema = config.schema_
        if config.schema_from_expected:
            schema = case.expected
            if why := schema_problem(schema):
                return Score(None, f"expected {why}")
        value, why = parse_json(case.output)
        if why:
            return Score(0.0, why)
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return Score(1.0)
        place = "/".join(map(str, error.absolute_path)) or "(root)"
        return Score(0.0, f"{place}: {error.message[:300]}")
