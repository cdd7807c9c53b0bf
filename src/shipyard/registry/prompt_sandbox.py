"""The Jinja2 sandbox that prompt templates render in (`templates.render` is the way in).

A template is untrusted text; so is every variable. Rendering one must end, quickly,
in a prompt or an `InvalidInput` / `PayloadTooLarge`, and must never reach a Python
object. The layers, from the outside in:

- **Environment.** `ImmutableSandboxedEnvironment` (no attribute starting with `_`, no
  mutation of lists and dicts), `StrictUndefined`, autoescape off, no loader (so
  `include`, `import` and `extends` are refused when a template is compiled), three
  globals (`range`, `dict`, `namespace`) and a curated set of filters. On top of
  the sandbox's own rules, attributes of `str`, `dict`, `list` and `tuple` are limited
  to a list of harmless methods, numbers and classes have none, and printing a
  function or a class is refused (so no `<class '...'>` ever reaches a prompt).
- **Sizes before work.** Every operation that can build a large value out of small
  ones is checked *before* it runs, against the render's value cap (its
  `max_output_chars`): `*` and `+` on strings, lists and tuples, `**` and `*` on
  integers (at most `MAX_INT_BITS` bits), `%` formatting and `str.format` (widths,
  precisions and the size of each argument they print; `*` widths and nested
  fields refused), `~`, `join` (the filter and the method), `replace`, `center`,
  `ljust`/`rjust`/`zfill`, `indent`, `format`, `string`, `tojson`, and the text form
  of any value printed (`{{ [big] * n }}` would print far more than it holds).
  `range()` has at most `MAX_RANGE` items.
- **Counted output.** Every piece of output, whether it goes to the caller or into a
  buffer (a macro's body, `{% set %}...{% endset %}`, `{% filter %}`), is counted: all
  of it together may be at most `WORK_FACTOR` times the output cap. What reaches the
  caller is counted as it streams (`templates.render` stops at the cap).
- **Time, cooperatively.** No thread, signal or `sys.settrace`: the code generator is
  subclassed so that every `{% for %}` iterates through a guard, and the sandbox's
  hooks (`call`, `call_binop`, `getattr`, `getitem`), every filter and every piece of
  output check the render's deadline. A template has no loop but `for` and no other
  way to repeat work than calls, so some check runs between any two steps of
  unbounded work, and each step between checks is bounded by the size caps. Loops
  together run at most `MAX_ITERATIONS` times, and macro calls nest at most
  `MAX_CALL_DEPTH` deep (recursion ends as `InvalidInput`, not `RecursionError`); both
  make the common failures deterministic, the deadline catches the rest.
- **Nesting.** A `namespace` is the one thing that outlives a loop iteration, so it is
  the one way to nest lists in lists without bound (`{% set ns.x = [ns.x] %}`); what it
  holds may nest at most `MAX_NESTING` levels (hashing a value nested 100,000 deep
  overflows a thread's C stack). Every other nesting is bounded by the template's text.

The limits (`MAX_*`) and the checks are in `prompt_limits`.

The render's limits live in a `ContextVar` that `rendering()` sets; the hooks refuse
to run without one, which also keeps Jinja from folding constants at compile time.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Environment, Template
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shipyard.errors import InvalidInput
from shipyard.registry import prompt_limits as limits
from shipyard.registry.prompt_limits import GLOBALS, RenderState, rendering

__all__ = ["GLOBALS", "RenderState", "rendering", "compile_source", "environment"]

# fmt: off
_STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "format", "format_map",
    "index", "isalnum", "isalpha", "isdecimal", "isdigit", "islower", "isnumeric", "isspace",
    "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix",
    "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
# fmt: on
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_SEQ_METHODS = frozenset({"count", "index"})
_LOOP_GUARD = "_loop_guard"


# filters ----------------------------------------------------------------------------


def _checked(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the deadline first and the size of the string it returns."""

    @functools.wraps(func)  # keeps `jinja_pass_arg` (pass_environment and friends)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        state = limits.current()
        state.check()
        result = func(*args, **kwargs)
        if isinstance(result, str):
            state.value(len(result))
        return result

    return filter_


def _center(value: Any, width: int = 80) -> str:
    limits.check_width(width, limits.current())
    return str(value).center(width)


def _indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text, state = str(value), limits.current()
    prefix = width if isinstance(width, int) else len(str(width))
    state.value(len(text) + max(prefix, 0) * (text.count("\n") + 1), "an indented string")
    indent_: Callable[..., str] = FILTERS["indent"]
    return indent_(text, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise InvalidInput("the format filter takes positional or keyword arguments, not both")
    text = str(value)
    limits.check_percent(text, kwargs or args, limits.current())
    return text % (kwargs or args)


@pass_environment
def _join(env: Environment, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    state = limits.current()
    items = limits.materialize(value)
    if attribute is not None:
        items = list(map(make_attrgetter(env, attribute), items))
    limits.check_join(str(d), items, state.value_cap, state)
    return str(d).join(map(str, items))


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    limits.check_replace(text, old, new, -1 if count is None else count, limits.current())
    return text.replace(old, new, -1 if count is None else count)


def _string(value: Any) -> str:
    state = limits.current()
    state.value(limits.size_of(value, state.value_cap))
    return str(value)


def _tojson(value: Any, indent: int | None = None) -> str:
    state = limits.current()
    if indent is not None and not 0 <= indent <= 8:
        raise InvalidInput("tojson's indent must be between 0 and 8")
    state.value(limits.size_of(value, state.value_cap) * (1 + (indent or 0)), "a JSON text")
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=indent)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"tojson: {exc}") from None


@pass_environment
def _sum(env: Environment, value: Any, attribute: str | int | None = None, start: Any = 0) -> Any:
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise InvalidInput("the sum filter adds numbers (its start must be a number)")
    sum_: Callable[..., Any] = FILTERS["sum"]
    return sum_(env, value, attribute, start)


def _loop_guard(value: Any) -> Iterator[Any]:
    """What every `{% for %}` iterates through (see `_CodeGenerator`)."""
    state = limits.current()
    for item in value:
        state.tick()
        yield item


# fmt: off
_PLAIN_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "dictsort", "filesizeformat", "first",
    "float", "groupby", "int", "items", "last", "length", "list", "lower", "map", "max", "min",
    "reject", "rejectattr", "reverse", "round", "select", "selectattr", "sort", "striptags",
    "title", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
)
# fmt: on
_OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "join": _join,
    "replace": _replace,
    "string": _string,
    "tojson": _tojson,
    "sum": _sum,
}


def filters() -> dict[str, Callable[..., Any]]:
    chosen = {name: FILTERS[name] for name in _PLAIN_FILTERS} | _OWN_FILTERS
    return {name: _checked(func) for name, func in chosen.items()} | {_LOOP_GUARD: _loop_guard}


def _range(*args: int) -> range:
    state = limits.current()
    state.check()
    try:
        items = range(*args)
        length = len(items)
    except OverflowError:
        length = limits.MAX_RANGE + 1
    if length > limits.MAX_RANGE:
        raise InvalidInput(f"range() may have at most {limits.MAX_RANGE} items")
    return items


def _finalize(value: Any) -> Any:
    """Every `{{ expression }}`, before it becomes text."""
    if not isinstance(value, str):
        state = limits.current()
        state.value(limits.size_of(value, state.value_cap), "a printed value")
    return value


# the environment --------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with three changes: every `for` iterates through
    `_loop_guard`, every `~` checks the size of what it joins, and every piece of output
    is counted by `PromptEnvironment.emit`."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            guarded = nodes.Filter(loop.iter, _LOOP_GUARD, [], [], None, None)
            guarded.set_lineno(loop.lineno)
            guarded.set_environment(self.environment)
            loop.iter = guarded
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.sized((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        return f"environment.emit({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.emit(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")


class PromptEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            optimized=False,
            finalize=_finalize,
            keep_trailing_newline=True,
            cache_size=0,
        )
        self.globals.clear()
        self.globals.update(range=_range, dict=dict, namespace=limits.GuardedNamespace)
        self.filters = filters()

    # what the generated code calls
    def emit(self, text: str) -> str:
        limits.current().emitted(len(text))
        return text

    def sized(self, items: tuple[Any, ...]) -> tuple[Any, ...]:
        state, total = limits.current(), 0
        for item in items:
            total += limits.size_of(item, state.value_cap - total)
            state.value(total, "a string")
        return items

    # the sandbox's hooks
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, dict):
            return attr in _DICT_METHODS
        if isinstance(obj, list | tuple):
            return attr in _SEQ_METHODS
        return not isinstance(obj, type | int | float | complex)

    def getattr(self, obj: Any, attribute: str) -> Any:
        limits.current().check()
        if isinstance(obj, dict) and attribute not in _DICT_METHODS:
            if attribute in obj:  # a key is what a prompt means by `user.name`
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        limits.current().check()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def format_(*args: Any, **kwargs: Any) -> str:
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                limits.check_format(fmt, (), args[0])
            else:
                limits.check_format(fmt, args, kwargs)
            result = wrapped(*args, **kwargs)
            limits.current().value(len(result))
            return result

        return format_

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        state = limits.current()
        state.check()
        limits.check_binop(operator, left, right, state)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        state = limits.current()
        state.check()
        if isinstance(obj, LoopContext) and args:  # a recursive loop's next level
            args = (_loop_guard(args[0]), *args[1:])
        args = limits.check_method(obj, args, state)
        state.depth += 1
        try:
            if state.depth > limits.MAX_CALL_DEPTH:
                raise InvalidInput(f"macro calls nest more than {limits.MAX_CALL_DEPTH} deep")
            result = super().call(context, obj, *args, **kwargs)
        finally:
            state.depth -= 1
        if isinstance(result, str):
            state.value(len(result))
        return result


@functools.cache
def environment() -> PromptEnvironment:
    """The one environment (stateless: a render's limits are in `rendering()`)."""
    return PromptEnvironment()


class TemplateSourceError(ValueError):
    """A template that does not parse or compile (a ValueError, so that pydantic
    validators report it at the field)."""


@dataclass(frozen=True)
class Compiled:
    template: Template
    variables: frozenset[str]  # the names it reads, less the globals


_REFUSED_TAGS = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}


CACHE_CHARS = 4_000_000  # compiled templates kept, by the length of their text


class _Cache:
    """Compiled templates, least recently used dropped first once their texts add up
    to more than `CACHE_CHARS` (a count of entries would not bound the memory)."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, Compiled] = OrderedDict()
        self.chars = 0
        self.lock = threading.Lock()

    def get(self, source: str) -> Compiled | None:
        with self.lock:
            found = self.entries.get(source)
            if found is not None:
                self.entries.move_to_end(source)
            return found

    def put(self, source: str, compiled: Compiled) -> None:
        with self.lock:
            if source not in self.entries:
                self.entries[source] = compiled
                self.chars += len(source)
            while self.chars > CACHE_CHARS and len(self.entries) > 1:
                dropped, _ = self.entries.popitem(last=False)
                self.chars -= len(dropped)


_CACHE = _Cache()


def compile_source(source: str) -> Compiled:
    """Parse and compile one template text (cached); raises TemplateSourceError."""
    found = _CACHE.get(source)
    if found is None:
        found = _compile(source)
        _CACHE.put(source, found)
    return found


def _compile(source: str) -> Compiled:
    env = environment()
    try:
        tree = env.parse(source)
        for kind, tag in _REFUSED_TAGS.items():
            found = tree.find(kind)
            if found is not None:
                raise TemplateSourceError(
                    f"line {found.lineno}: {{% {tag} %}} is not supported (a prompt is one "
                    "template)"
                )
        used = frozenset(meta.find_undeclared_variables(tree))
        code = env.compile(tree)
    except TemplateSourceError:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateSourceError(f"line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise TemplateSourceError("the template nests too deeply") from None
    except Exception as exc:  # Python's compiler refusing generated code, and the like
        raise TemplateSourceError(f"the template cannot be compiled ({exc})"[:300]) from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return Compiled(template, used - GLOBALS)
