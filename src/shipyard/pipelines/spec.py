"""A pipeline's spec: what a version holds, and its check on save.

A spec is declarative (YAML, JSON, or the SDK's builder, which writes the same dict):

    inputs:
      question: {type: string}
    steps:
      - id: search
        type: retrieve
        knowledge_base: handbook
        query: $inputs.question
        k: 4
      - id: prompt
        type: prompt
        prompt: support-answer@production
        variables: {question: $inputs.question, context: $steps.search.text}
      - id: answer
        type: model
        messages: $steps.prompt
        retry: {attempts: 2, backoff_s: 0.5}
    output: answer          # a step id; the last step when left out

A string that is a reference reads a value: `$inputs.<name>`, `$steps.<id>` (the step's
output; `.text` and `.ids` of retrieved chunks, a key or an index of anything else) or
`$item` inside a step a `map` runs. `$$` starts a literal `$`. Step types are plugins
(`shipyard.pipeline_steps`); each declares its configuration model, its output type and
the type each reference field needs.

`compile_spec` refuses, naming the step: unknown step types, fields or references,
duplicate ids, cycles (through references, branches and maps), a reference whose type
the field cannot take (chunks where a string is wanted), `$item` outside a map."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from shipyard.errors import InvalidInput
from shipyard.inputs import Strict
from shipyard.plugins import PIPELINE_STEPS

STEPS_GROUP = PIPELINE_STEPS
IDENT = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_IDENT = re.compile(IDENT)
_REF = re.compile(r"^\$(inputs|steps|item)((?:\.[A-Za-z0-9_-]{1,64}){0,8})$")
MAX_STEPS = 64
COMMON = frozenset({"id", "type", "retry", "timeout_s", "description"})

# output and field types; "any" takes and gives everything
TYPES = ("string", "messages", "chunks", "list", "object", "scalar", "any")
_ACCEPTS = {
    "string": {"string", "scalar", "any"},
    "messages": {"messages", "string", "list", "any"},
    "list": {"list", "chunks", "any"},
    "object": {"object", "messages", "any"},
    "any": set(TYPES),
}
_INPUT_TYPES = {
    "string": "string",
    "number": "scalar",
    "integer": "scalar",
    "boolean": "scalar",
    "array": "list",
    "object": "object",
}


_PY: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def is_type(value: Any, kind: str) -> bool:
    """`value` is of the JSON Schema type `kind` (a boolean is not a number)."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PY[kind])


class InputSpec(Strict):
    type: Literal["string", "number", "integer", "boolean", "array", "object"] = "string"
    required: bool = True
    default: Any = None
    description: str = Field(default="", max_length=2000)
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)


class Retry(Strict):
    attempts: int = Field(default=0, ge=0, le=5, description="retries after the first try")
    backoff_s: float = Field(default=0.5, ge=0, le=30)


class SpecIn(Strict):
    """A pipeline version's spec as sent (YAML parsed to this, or the SDK's dict)."""

    description: str = Field(default="", max_length=4000)
    inputs: dict[str, InputSpec] = Field(default_factory=dict, max_length=32)
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_STEPS)
    output: str | None = Field(default=None, max_length=64, description="a step id")
    # the input that the last user message fills when the pipeline is called as a model
    chat_input: str | None = Field(default=None, max_length=64)


@dataclass(frozen=True, slots=True)
class Ref:
    root: str  # inputs | steps | item
    name: str  # the input or step ("" for $item)
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "$" + ".".join(p for p in (self.root, self.name, *self.path) if p)


def parse_ref(value: str) -> Ref | None:
    """The reference a string is, or None for a literal (`$$x` is the literal `$x`)."""
    if not value.startswith("$") or value.startswith("$$"):
        return None
    m = _REF.fullmatch(value)
    if m is None:
        raise ValueError(f"'{value[:80]}' is not a reference ($inputs.x, $steps.x, $item)")
    root, rest = m.group(1), [p for p in m.group(2).split(".") if p]
    if root == "item":
        return Ref("item", "", tuple(rest))
    if not rest:
        raise ValueError(f"'{value}' names no {root[:-1]}")
    return Ref(root, rest[0], tuple(rest[1:]))


def literal(value: str) -> str:
    return value[1:] if value.startswith("$$") else value


def refs_in(value: Any) -> Iterator[Ref]:
    """Every reference in a configuration value, nested ones included."""
    if isinstance(value, str):
        ref = parse_ref(value)
        if ref is not None:
            yield ref
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs_in(v)


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    config: dict[str, Any]  # checked against the step type's model; references unresolved
    impl: Any  # the step type (a PipelineStep)
    retry: Retry
    timeout_s: float
    refs: tuple[Ref, ...]  # what resolving the configuration reads
    targets: tuple[str, ...]  # steps this one runs itself (a branch's cases, a map's step)
    item_scoped: bool = False  # reads $item, directly or through a step it reads


@dataclass(frozen=True)
class Pipeline:
    """A checked spec, ready to run."""

    label: str  # name@vN
    spec: dict[str, Any] = field(repr=False)
    inputs: dict[str, InputSpec] = field(repr=False)
    steps: dict[str, Step] = field(repr=False)
    output: str = ""
    chat_input: str | None = None

    @property
    def output_step(self) -> Step:
        return self.steps[self.output]


def type_of(ref: Ref, inputs: Mapping[str, InputSpec], steps: Mapping[str, Step]) -> str:
    if ref.root == "item":
        return "any"
    if ref.root == "inputs":
        base = _INPUT_TYPES[inputs[ref.name].type]
    else:
        base = steps[ref.name].impl.output_type
    if not ref.path:
        return str(base)
    if base == "chunks" and ref.path == ("text",):
        return "string"
    if base == "chunks" and ref.path == ("ids",):
        return "list"
    if base in ("string", "scalar"):
        raise ValueError(f"{ref} reads a field of a {base}, which has none")
    return "any"


def compile_spec(raw: Any, *, label: str, load_step: Any) -> Pipeline:
    """The spec checked and compiled; InvalidInput names the step (and field) at fault.
    `load_step(type)` returns a step type or raises KeyError."""
    try:
        spec = SpecIn.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"spec: {_first(exc)}", param="spec") from None
    for name, declared in spec.inputs.items():
        if not _IDENT.fullmatch(name):
            raise InvalidInput(f"spec.inputs: '{name[:70]}' must match {IDENT}", param="spec")
        if declared.default is not None and not is_type(declared.default, declared.type):
            raise InvalidInput(f"spec.inputs.{name}: default must be {declared.type}")
    steps: dict[str, Step] = {}
    for position, entry in enumerate(spec.steps):
        step = _step(position, entry, load_step)
        if step.id in steps:
            raise InvalidInput(f"step '{step.id}': a second step has this id", param="spec")
        steps[step.id] = step
    for step in steps.values():
        _check_links(step, spec.inputs, steps)
    _acyclic(steps)
    steps = _scoped(steps)
    output = spec.output or list(steps)[-1]
    if output not in steps:
        raise InvalidInput(f"spec.output: no step has the id '{output}'", param="spec")
    mapped = _mapped(steps)
    for step in steps.values():
        for target in step.targets:
            if step.type == "map" and steps[target].type == "map":
                raise InvalidInput(f"step '{step.id}': a map's step may not be a map itself")
        if step.item_scoped and step.id not in mapped:
            raise InvalidInput(f"step '{step.id}': reads $item, but no map runs it")
    if steps[output].item_scoped:
        raise InvalidInput(f"spec.output: step '{output}' reads $item (only a map runs it)")
    if spec.chat_input is not None and spec.chat_input not in spec.inputs:
        raise InvalidInput(f"spec.chat_input: no input is named '{spec.chat_input}'")
    return Pipeline(
        label=label,
        spec=spec.model_dump(exclude_none=True),
        inputs=dict(spec.inputs),
        steps=steps,
        output=output,
        chat_input=spec.chat_input or _default_chat_input(spec.inputs),
    )


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'is invalid')}" if where else str(err.get("msg"))


def _step(position: int, entry: dict[str, Any], load_step: Any) -> Step:
    sid = entry.get("id")
    if not isinstance(sid, str) or not _IDENT.fullmatch(sid):
        raise InvalidInput(f"steps[{position}].id: a step needs an id matching {IDENT}")
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise InvalidInput(f"step '{sid}': type is missing")
    try:
        impl = load_step(kind)
    except KeyError:
        raise InvalidInput(f"step '{sid}': unknown type '{kind[:64]}'") from None
    try:
        retry = Retry.model_validate(entry.get("retry") or {})
    except ValidationError as exc:
        raise InvalidInput(f"step '{sid}': retry.{_first(exc)}") from None
    timeout = entry.get("timeout_s", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise InvalidInput(f"step '{sid}': timeout_s must be a number in (0, 600]")
    body = {k: v for k, v in entry.items() if k not in COMMON}
    model: type[BaseModel] = impl.config_model
    try:
        config = model.model_validate(body).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise InvalidInput(f"step '{sid}' ({kind}): {_first(exc)}") from None
    try:
        refs = tuple(refs_in(config))
    except ValueError as exc:
        raise InvalidInput(f"step '{sid}': {exc}") from None
    targets = tuple(impl.targets(config)) if hasattr(impl, "targets") else ()
    return Step(sid, kind, config, impl, retry, float(timeout), refs, targets)


def _check_links(step: Step, inputs: Mapping[str, InputSpec], steps: Mapping[str, Step]) -> None:
    for ref in step.refs:
        if ref.root == "inputs" and ref.name not in inputs:
            raise InvalidInput(f"step '{step.id}': {ref} names no declared input")
        if ref.root == "steps" and ref.name not in steps:
            raise InvalidInput(f"step '{step.id}': {ref} names no step")
        if ref.root == "steps" and ref.name == step.id:
            raise InvalidInput(f"step '{step.id}': reads its own output")
    for target in step.targets:
        if target not in steps:
            raise InvalidInput(f"step '{step.id}': runs step '{target[:64]}', which does not exist")
    for name, want in dict(step.impl.expects).items():
        value = step.config.get(name)
        read = parse_ref(value) if isinstance(value, str) else None
        if read is None:
            continue
        try:
            got = type_of(read, inputs, steps)
        except ValueError as exc:
            raise InvalidInput(f"step '{step.id}': {name}: {exc}") from None
        if got not in _ACCEPTS[want]:
            hint = f" (use {read}.text)" if got == "chunks" and want == "string" else ""
            raise InvalidInput(
                f"step '{step.id}': {name} needs {want}, but {read} gives {got}{hint}"
            )


def _edges(step: Step) -> list[str]:
    return [r.name for r in step.refs if r.root == "steps"] + list(step.targets)


def _acyclic(steps: Mapping[str, Step]) -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(sid: str, path: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            loop = path[path.index(sid) :] + [sid]
            raise InvalidInput(f"step '{sid}': a cycle: {' -> '.join(loop)}", param="spec")
        state[sid] = 1
        for nxt in _edges(steps[sid]):
            visit(nxt, [*path, sid])
        state[sid] = 2

    for sid in steps:
        visit(sid, [])


def _scoped(steps: dict[str, Step]) -> dict[str, Step]:
    """Mark the steps that read $item, directly or through a step they read."""
    scoped: dict[str, bool] = {}

    def visit(sid: str) -> bool:
        if sid not in scoped:
            step = steps[sid]
            direct = any(r.root == "item" for r in step.refs)
            scoped[sid] = (
                direct
                or any(visit(r.name) for r in step.refs if r.root == "steps")
                or any(visit(t) for t in step.targets if step.type != "map")
            )
        return scoped[sid]

    out = {}
    for sid, step in steps.items():
        out[sid] = replace(step, item_scoped=visit(sid))
    return out


def _mapped(steps: Mapping[str, Step]) -> set[str]:
    """Steps a map runs, and what those read or run in the item's scope."""
    found: set[str] = set()
    todo = [t for s in steps.values() if s.type == "map" for t in s.targets]
    while todo:
        sid = todo.pop()
        if sid in found:
            continue
        found.add(sid)
        step = steps[sid]
        todo.extend(r.name for r in step.refs if r.root == "steps" and steps[r.name].item_scoped)
        todo.extend(t for t in step.targets if step.type != "map")
    return found


def _default_chat_input(inputs: Mapping[str, InputSpec]) -> str | None:
    for name, spec in inputs.items():
        if spec.type == "string":
            return name
    return None
