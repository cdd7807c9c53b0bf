"""Prompt templates: what a prompt version holds, how it renders, how two versions differ.

    {"template": {"type": "text", "text": "Summarize: {{ doc }}"},
     "variables": {"doc": {"type": "string", "max_length": 20000}}}

    {"template": {"type": "chat", "messages": [
        {"role": "system", "content": "You answer for {{ company }}."},
        {"role": "user", "content": "{{ question }}"}]},
     "variables": {"company": {"type": "string", "default": "Acme"},
                   "question": {"type": "string"}}}

A template is Jinja2, rendered in the sandbox of `prompt_sandbox` (its docstring lists
what is refused and how rendering is kept bounded in size and time). Autoescape is off
(a prompt is not HTML), a trailing newline is kept, and blocks are not trimmed.

The variables schema: every variable a template reads must be declared. When the
schema is left out, it is *inferred*: each variable the template reads becomes a
required string. A variable with a `default` is optional (`required` defaults to
false then; a required variable with a default is refused). An optional variable
without a default that is not given (or given as null) is undefined in the template:
`{% if x is defined %}` and `{{ x | default("...") }}` work, `{{ x }}` is an
InvalidInput naming `variables.x`.

Errors: `PromptTemplate` is a pydantic model, so bad shapes raise pydantic's
ValidationError with the field's location (`template.messages.3.content`); a route
taking it as a body gets a 422 naming the field. `parse_template` turns the same into
`InvalidInput` (param = the location) for callers that are not FastAPI. `render`
raises only `InvalidInput` (bad variables, a template that fails or exceeds a cap;
param `variables.<name>` or the template's location) and `PayloadTooLarge` (output
over `max_output_chars`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Generator, Mapping
from contextlib import closing
from typing import Any, Literal, cast

import yaml
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shipyard.errors import InvalidInput, PayloadTooLarge, ShipyardError
from shipyard.inputs import MAX_DEPTH, Strict, invalid
from shipyard.registry import prompt_sandbox as sandbox

MAX_MESSAGES = 200
MAX_CONTENT_CHARS = 100_000  # one message's content, or a text template
MAX_TEMPLATE_CHARS = 200_000  # all messages together (compiling costs ~10-30 us a char)
MAX_VARIABLES = 200
DEFAULT_MAX_OUTPUT_CHARS = 200_000
DEFAULT_TIMEOUT_S = 1.0

Role = Literal["system", "user", "assistant"]
VariableType = Literal["string", "number", "integer", "boolean", "array", "object"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# fmt: off
RESERVED = sandbox.GLOBALS | {
    "loop", "self", "caller", "varargs", "kwargs", "super",
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else",
}
# fmt: on


# variables --------------------------------------------------------------------------


def _json(value: Any, where: str, depth: int = 0) -> Any:
    """A plain-JSON copy of `value` (so a template sees nothing but JSON types)."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} nests more than {MAX_DEPTH} levels", param=where)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{where} must not contain NUL characters", param=where)
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} must be a finite number", param=where)
        return float(value)
    if isinstance(value, list | tuple):
        return [_json(item, f"{where}.{i}", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where} must have string keys", param=where)
            out[str.__str__(key)] = _json(item, f"{where}.{key}", depth + 1)
        return out
    raise InvalidInput(f"{where} must be JSON, not {type(value).__name__}", param=where)


def _typed(kind: VariableType, value: Any, max_length: int | None, where: str) -> Any:
    ok = {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer()),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list | tuple),
        "object": isinstance(value, Mapping),
    }[kind]
    if not ok:
        article = "an" if kind[0] in "aeiou" else "a"
        raise InvalidInput(f"{where} must be {article} {kind}", param=where)
    if max_length is not None and len(value) > max_length:
        unit = "characters" if kind == "string" else "items"
        raise InvalidInput(f"{where} may have at most {max_length} {unit}", param=where)
    value = _json(value, where)
    return int(value) if kind == "integer" else value


class VariableSpec(Strict):
    type: VariableType = "string"
    required: bool = True
    default: JsonValue | None = None
    description: str = Field(default="", max_length=2000)
    max_length: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _optional_with_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "required" not in data and data.get("default") is not None:
            return {**data, "required": False}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> VariableSpec:
        if self.max_length is not None and self.type not in ("string", "array"):
            raise ValueError("max_length applies to string and array variables")
        if self.default is not None:
            if self.required:
                raise ValueError("a required variable cannot have a default")
            try:
                self.default = _typed(self.type, self.default, self.max_length, "default")
            except InvalidInput as exc:
                raise ValueError(exc.detail) from None
        return self

    def check(self, value: Any, where: str) -> Any:
        """`value` as this variable takes it; raises InvalidInput naming `where`."""
        return _typed(self.type, value, self.max_length, where)


def check_variables(schema: Mapping[str, VariableSpec], variables: Any) -> dict[str, Any]:
    """The values a render uses: every one declared and of its type, defaults filled
    in, optional ones left out when not given (or null). Raises InvalidInput naming
    `variables.<name>`."""
    if not isinstance(variables, Mapping):
        raise InvalidInput("variables must be an object", param="variables")
    for name in variables:
        if name not in schema:
            where = f"variables.{name}"
            raise InvalidInput(f"{where} is not a variable of this prompt", param=where)
    values: dict[str, Any] = {}
    for name, spec in schema.items():
        value = variables.get(name)
        if value is not None:
            values[name] = spec.check(value, f"variables.{name}")
        elif spec.default is not None:
            values[name] = _json(spec.default, f"variables.{name}")  # a fresh copy
        elif spec.required:
            where = f"variables.{name}"
            raise InvalidInput(f"{where} is required", param=where)
    return values


# the template -----------------------------------------------------------------------


def _compiled(source: str) -> str:
    sandbox.compile_source(source)  # raises TemplateSourceError, a ValueError
    return source


class ChatMessage(Strict):
    role: Role
    content: str = Field(max_length=MAX_CONTENT_CHARS)

    @field_validator("content")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _compiled(value)


class TemplateBody(Strict):
    type: Literal["text", "chat"]
    text: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)

    @model_validator(mode="before")
    @classmethod
    def _total_size(cls, data: Any) -> Any:  # before each message is compiled
        messages = data.get("messages") if isinstance(data, dict) else None
        if isinstance(messages, list):
            total = sum(len(m.get("content", "")) for m in messages if isinstance(m, dict))
            if total > MAX_TEMPLATE_CHARS:
                raise ValueError(f"messages may hold at most {MAX_TEMPLATE_CHARS} characters")
        return data

    @field_validator("text")
    @classmethod
    def _text_parses(cls, value: str | None) -> str | None:
        return None if value is None else _compiled(value)

    @model_validator(mode="after")
    def _one_shape(self) -> TemplateBody:
        if self.type == "text" and (self.text is None or self.messages is not None):
            raise ValueError("a text template has `text` and no `messages`")
        if self.type == "chat" and (self.messages is None or self.text is not None):
            raise ValueError("a chat template has `messages` and no `text`")
        return self

    def sources(self) -> list[tuple[str, str]]:
        """(location, template text) for each part, the location as errors name it."""
        if self.type == "text":
            return [("template.text", self.text or "")]
        return [
            (f"template.messages.{i}.content", m.content) for i, m in enumerate(self.messages or [])
        ]


class PromptTemplate(Strict):
    template: TemplateBody
    variables: dict[str, VariableSpec] = Field(
        default=None, validate_default=True
    )  # None: inferred

    @field_validator("variables", mode="before")
    @classmethod
    def _infer(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        body = info.data.get("template")
        if not isinstance(body, TemplateBody):
            return {}  # the template's own error is reported
        return {name: {"type": "string", "required": True} for name in sorted(_used(body))}

    @field_validator("variables")
    @classmethod
    def _declared(cls, value: dict[str, VariableSpec], info: ValidationInfo) -> Any:
        if len(value) > MAX_VARIABLES:
            raise ValueError(f"at most {MAX_VARIABLES} variables")
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits, _)")
            if name in RESERVED:
                raise ValueError(f"{name!r} is a name templates reserve")
        body = info.data.get("template")
        for where, source in body.sources() if isinstance(body, TemplateBody) else []:
            missing = sorted(sandbox.compile_source(source).variables - value.keys())
            if missing:
                names = ", ".join(repr(n) for n in missing)
                raise ValueError(f"{where} uses {names}, which variables does not declare")
        return value


def parse_template(data: Any) -> PromptTemplate:
    """`PromptTemplate` from plain data; raises InvalidInput naming the field."""
    try:
        return PromptTemplate.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def _used(body: TemplateBody) -> set[str]:
    return {n for _, source in body.sources() for n in sandbox.compile_source(source).variables}


def variables_used(template: PromptTemplate) -> set[str]:
    """The variables the template reads (jinja2.meta.find_undeclared_variables), less
    the sandbox's globals."""
    return _used(template.template)


# rendering --------------------------------------------------------------------------


class Rendered(BaseModel):
    type: Literal["text", "chat"]
    text: str | None = None  # a text template's output
    messages: list[dict[str, str]] | None = None  # a chat template's: {role, content}
    variables: dict[str, Any]  # the values used, defaults filled in


_UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")


def _located(exc: ShipyardError, where: str) -> ShipyardError:
    if exc.param is None:
        exc.param = where
        exc.detail = f"{where}: {exc.detail}"
        exc.args = (exc.detail,)
    return exc


def _render_one(
    compiled: sandbox.Compiled, values: dict[str, Any], state: sandbox.RenderState, where: str
) -> str:
    parts: list[str] = []
    try:
        chunks = cast(Generator[str, None, None], compiled.template.generate(values))
        with closing(chunks):
            for chunk in chunks:
                state.streamed(len(chunk))
                parts.append(chunk)
    except ShipyardError as exc:
        raise _located(exc, where) from None
    except SecurityError as exc:
        raise InvalidInput(f"{where}: refused by the sandbox: {exc}"[:500], param=where) from None
    except UndefinedError as exc:
        found = _UNDEFINED_NAME.fullmatch(str(exc))
        param = f"variables.{found[1]}" if found else where
        raise InvalidInput(f"{where}: {exc}"[:500], param=param) from None
    except TemplateError as exc:
        raise InvalidInput(f"{where}: {exc}"[:500], param=where) from None
    except RecursionError:
        raise InvalidInput(f"{where}: the template recurses too deeply", param=where) from None
    except MemoryError:
        raise PayloadTooLarge(f"{where}: the template ran out of memory", param=where) from None
    except Exception as exc:  # a template's own failure (1 / 0, "a" - 1, ...), not a bug
        detail = f"{where}: {type(exc).__name__}: {exc}"[:500]
        raise InvalidInput(detail, param=where) from None
    return "".join(parts)


def render(
    template: PromptTemplate,
    variables: Mapping[str, Any],
    *,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Rendered:
    """Render `template` with `variables` (checked against its schema first). The caps
    cover the whole render (all messages together). Raises InvalidInput or
    PayloadTooLarge, never anything else."""
    values = check_variables(template.variables, variables)
    body = template.template
    parts = []
    for where, source in body.sources():  # compiled (or found cached) before the clock runs
        try:
            parts.append((where, sandbox.compile_source(source)))
        except sandbox.TemplateSourceError as exc:  # a model built without validation
            raise InvalidInput(f"{where}: {exc}", param=where) from None
    with sandbox.rendering(max_output_chars=max_output_chars, timeout_s=timeout_s) as state:
        outputs = [_render_one(compiled, values, state, where) for where, compiled in parts]
    if body.type == "text":
        return Rendered(type="text", text=outputs[0], variables=values)
    roles = [m.role for m in body.messages or []]
    messages = [{"role": r, "content": c} for r, c in zip(roles, outputs, strict=True)]
    return Rendered(type="chat", messages=messages, variables=values)


# diffs ------------------------------------------------------------------------------


def canonical_text(template: PromptTemplate) -> str:
    """One text form of a template, what `diff` compares: each part under a `[role]`
    (or `[text]`) header, then the variables schema as YAML with sorted keys."""
    body = template.template
    headers = ["text"] if body.type == "text" else [m.role for m in body.messages or []]
    parts = [
        f"[{header}]\n{source.removesuffix(chr(10))}"
        for header, (_, source) in zip(headers, body.sources(), strict=True)
    ]
    schema = {}
    for name, spec in template.variables.items():
        entry = spec.model_dump(exclude_none=True)
        if not entry.get("description"):
            entry.pop("description", None)
        schema[name] = entry
    parts.append("[variables]\n" + yaml.safe_dump(schema, sort_keys=True, allow_unicode=True))
    return "\n".join(parts).rstrip("\n") + "\n"


def diff(
    a: PromptTemplate,
    b: PromptTemplate,
    *,
    a_label: str = "a",
    b_label: str = "b",
    context: int = 3,
) -> list[str]:
    """A unified diff (difflib, lines without their newline) from `a` to `b`, labelled
    with the caller's names for them (`v3`, `v5`); empty when they are the same."""
    return list(
        difflib.unified_diff(
            canonical_text(a).splitlines(),
            canonical_text(b).splitlines(),
            fromfile=a_label,
            tofile=b_label,
            n=context,
            lineterm="",
        )
    )
