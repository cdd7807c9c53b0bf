"""A prompt render's limits and the checks that keep it within them, before the work
is done (see `prompt_sandbox` for where each check is called from)."""

from __future__ import annotations

import re
import string
import time
import types
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

from shipyard.errors import InvalidInput, PayloadTooLarge

MAX_RANGE = 10_000  # items in one range()
MAX_ITERATIONS = 100_000  # loop iterations in one render, all loops together
MAX_CALL_DEPTH = 50  # nested macro / caller / recursive-loop calls
MAX_INT_BITS = 4096  # integers built with * and **
WORK_FACTOR = 10  # all output, buffered or not, is at most this times the output cap
GLOBALS = frozenset({"range", "dict", "namespace"})
MAX_NESTING = 64  # lists, dicts and namespaces inside one another
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class RenderState:
    """One render's limits and what it has used of them."""

    def __init__(self, *, max_output_chars: int, timeout_s: float) -> None:
        self.value_cap = max_output_chars
        self.work_cap = max_output_chars * WORK_FACTOR
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.output = self.work = self.iterations = self.depth = 0
        self.nesting: dict[int, tuple[int, object]] = {}  # id -> (depth, the value)

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise InvalidInput(f"rendering took longer than {self.timeout_s:g} s")

    def value(self, size: int, what: str = "a value") -> None:
        if size > self.value_cap:
            raise InvalidInput(
                f"the template would build {what} of {size} characters or more "
                f"(the limit is {self.value_cap})"
            )

    def emitted(self, size: int) -> None:
        self.work += size
        if self.work > self.work_cap:
            raise PayloadTooLarge(
                f"the template produced more than {self.work_cap} characters of output "
                "(counting macros and blocks)"
            )
        self.check()

    def streamed(self, size: int) -> None:
        self.output += size
        if self.output > self.value_cap:
            raise PayloadTooLarge(f"the rendered prompt is longer than {self.value_cap} characters")

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise InvalidInput(f"loops ran more than {MAX_ITERATIONS} times in one render")
        self.check()


_STATE: ContextVar[RenderState | None] = ContextVar("shipyard_prompt_render", default=None)


def current() -> RenderState:
    state = _STATE.get()
    if state is None:  # also what stops Jinja from evaluating filters at compile time
        raise RuntimeError("prompt templates render through shipyard.registry.templates")
    return state


@contextmanager
def rendering(*, max_output_chars: int, timeout_s: float) -> Iterator[RenderState]:
    state = RenderState(max_output_chars=max_output_chars, timeout_s=timeout_s)
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


# sizes ------------------------------------------------------------------------------


def size_of(value: object, limit: int) -> int:
    """About how many characters `value` prints as, counting stopped once past `limit`
    (so the cost is bounded by the limit, not by the value). A function or a class is
    refused: it has no business in a prompt."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Undefined):
            continue  # printing it raises its own error
        elif item is None or isinstance(item, bool | float):
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                for key, child in item.items():
                    stack += (key, child)
        elif isinstance(item, range):
            total += 32
        elif isinstance(item, list | tuple | set | frozenset | KeysView | ValuesView | ItemsView):
            total += 16 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        elif callable(item):
            raise InvalidInput(
                "the template prints a function or a class, not a value (a missing `()`?)"
            )
        else:
            total += 64
    return total


def materialize(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    items = []
    for item in value:
        current().tick()
        items.append(item)
    return items


def check_join(sep: str, items: list[Any], cap: int, state: RenderState) -> None:
    total = len(sep) * max(len(items) - 1, 0)
    for item in items:
        if total > cap:
            break
        total += size_of(item, cap - total)
    state.value(total, "a joined string")


def check_replace(text: str, old: str, new: str, count: int, state: RenderState) -> None:
    hits = text.count(old) if old else len(text) + 1
    if count >= 0:
        hits = min(hits, count)
    state.value(len(text) + hits * (len(new) - len(old)), "a string")


def check_width(value: Any, state: RenderState) -> None:
    if isinstance(value, int) and value > state.value_cap:
        state.value(value, "a padded string")


_PERCENT = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0 +\-]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?"
    r"(?P<conv>.?)",
    re.DOTALL,
)


def _number(digits: str | None, state: RenderState) -> int:
    if not digits:
        return 0
    if len(digits) > 9:
        state.value(10**9, "a padded string")
    number = int(digits)
    state.value(number, "a padded string")
    return number


def check_percent(fmt: str, args: Any, state: RenderState) -> None:
    """`fmt % args`: widths, precisions and the arguments it prints, added up."""
    positional = args if isinstance(args, tuple) else (args,)
    total, index = len(fmt), 0
    for match in _PERCENT.finditer(fmt):
        if match["conv"] == "%":
            continue
        if "*" in (match["width"], match["prec"]):
            raise InvalidInput("`*` widths in % formatting are not supported")
        total += _number(match["width"], state) + _number(match["prec"], state)
        if match["key"] is not None:
            arg = args.get(match["key"]) if isinstance(args, Mapping) else None
        else:
            arg = positional[index] if index < len(positional) else None
            index += 1
        total += size_of(arg, state.value_cap) * (4 if match["conv"] in ("r", "a") else 1)
        state.value(total, "a formatted string")


_FIELD_HEAD = re.compile(r"[^.\[]*")


def check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """`fmt.format(*args, **kwargs)`: the same, for `str.format`'s mini-language."""
    state = current()
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # the call itself reports the malformed format string
    total, auto = len(fmt), 0
    for _literal, field, spec, conversion in fields:
        if field is None:
            continue
        if spec and "{" in spec:
            raise InvalidInput("nested replacement fields in str.format are not supported")
        total += max((_number(n, state) for n in re.findall(r"\d+", spec or "")), default=0)
        head = _FIELD_HEAD.match(field)
        name = head.group() if head else ""
        if name == "":
            arg, auto = (args[auto] if auto < len(args) else None), auto + 1
        elif name.isdigit():
            arg = args[int(name)] if int(name) < len(args) else None
        else:
            arg = kwargs.get(name)
        total += size_of(arg, state.value_cap) * (4 if conversion in ("r", "a") else 1)
        total += 64 if name != field else 0  # an attribute or item of the argument
        state.value(total, "a formatted string")


def check_binop(operator: str, left: Any, right: Any, state: RenderState) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise InvalidInput(f"integers may have at most {MAX_INT_BITS} bits")
            return
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(times, int) and isinstance(seq, str | list | tuple) and times > 0:
            if times > state.value_cap:
                state.value(times, "a repeated value")
            state.value(size_of(seq, state.value_cap) * times, "a repeated value")
    elif operator == "**":
        big = ints and right > 0 and abs(left) > 1
        if big and (right > MAX_INT_BITS or right * left.bit_length() > MAX_INT_BITS):
            raise InvalidInput(f"integers may have at most {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            size = size_of(left, state.value_cap)
            state.value(size + size_of(right, state.value_cap - size), "a joined value")
    elif operator == "%" and isinstance(left, str):
        check_percent(left, right, state)


def check_method(obj: Any, args: tuple[Any, ...], state: RenderState) -> tuple[Any, ...]:
    if not isinstance(obj, types.BuiltinMethodType) or not isinstance(obj.__self__, str):
        return args
    name, text = obj.__name__, obj.__self__
    if name in _WIDTH_METHODS and args:
        check_width(args[0], state)
    elif name == "join" and len(args) == 1:
        items = materialize(args[0])
        check_join(text, items, state.value_cap, state)
        return (items,)
    elif name == "replace" and len(args) in (2, 3):
        old, new, *rest = args
        if isinstance(old, str) and isinstance(new, str):
            count = rest[0] if rest and isinstance(rest[0], int) else -1
            check_replace(text, old, new, count, state)
    return args


def check_nesting(value: object, state: RenderState) -> None:
    """Refuse `value` if it nests deeper than `MAX_NESTING`. Depths of values checked
    before are remembered, so `[ns.x]` costs one step, not a walk down `ns.x`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Namespace):
            children: Any = object.__getattribute__(item, "_Namespace__attrs").values()
        elif isinstance(item, Mapping):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            continue
        known = state.nesting.get(id(item))
        if known is not None and known[1] is item:
            deepest = max(deepest, depth - 1 + known[0])
        else:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
        if deepest > MAX_NESTING:
            raise InvalidInput(f"values may nest at most {MAX_NESTING} levels deep")
    state.nesting[id(value)] = (deepest, value)


class GuardedNamespace(Namespace):
    """The template's `namespace()`: what it holds is checked by `check_nesting`."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: B902 (as Namespace's)
        state = current()
        for item in dict(*args[1:], **kwargs).values():
            check_nesting(item, state)
        Namespace.__init__(*args, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        check_nesting(value, current())
        super().__setitem__(name, value)
