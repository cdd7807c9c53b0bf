"""Prompt templates: the model, variables, rendering in the sandbox, the caps, diffs.

Every attack below is a real template rendered by the real sandbox; each must end in
InvalidInput or PayloadTooLarge (the call returns, with the error the API turns into a
4xx), never in another exception, a hang, or output that shows a Python object."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.registry import prompt_limits, prompt_sandbox
from shipyard.registry.templates import (
    MAX_MESSAGES,
    PromptTemplate,
    VariableSpec,
    canonical_text,
    diff,
    parse_template,
    render,
    variables_used,
)

BOUNDED = (InvalidInput, PayloadTooLarge)


def text(source: str, variables: dict[str, Any] | None = None) -> PromptTemplate:
    data: dict[str, Any] = {"template": {"type": "text", "text": source}}
    if variables is not None:
        data["variables"] = variables
    return parse_template(data)


def chat(*messages: tuple[str, str], variables: dict[str, Any] | None = None) -> PromptTemplate:
    body = {"type": "chat", "messages": [{"role": r, "content": c} for r, c in messages]}
    data: dict[str, Any] = {"template": body}
    if variables is not None:
        data["variables"] = variables
    return parse_template(data)


KINDS = {str: "string", list: "array", dict: "object", int: "integer", float: "number"}


def out(source: str, **variables: Any) -> str:
    """Render `source` with `variables`, declared with the types of their values."""
    schema = {name: {"type": KINDS[type(value)]} for name, value in variables.items()}
    rendered = render(text(source, schema), variables).text
    assert rendered is not None
    return rendered


# the model --------------------------------------------------------------------------


def test_a_chat_template_round_trips_and_renders() -> None:
    template = chat(
        ("system", "You answer for {{ company }}."),
        ("user", "{{ question }}"),
        variables={"company": {"type": "string", "default": "Acme"}, "question": {}},
    )
    again = parse_template(template.model_dump())
    assert again == template
    rendered = render(again, {"question": "Where is my order?"})
    assert rendered.type == "chat" and rendered.text is None
    assert rendered.messages == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Where is my order?"},
    ]
    assert rendered.variables == {"company": "Acme", "question": "Where is my order?"}


def test_a_text_template_round_trips_and_keeps_its_trailing_newline() -> None:
    template = text("Summarize:\n{{ doc }}\n", {"doc": {"type": "string", "max_length": 50}})
    assert parse_template(template.model_dump(mode="json")) == template
    rendered = render(template, {"doc": "a report"})
    assert rendered.type == "text" and rendered.messages is None
    assert rendered.text == "Summarize:\na report\n"


def test_a_schema_left_out_is_inferred_as_required_strings() -> None:
    template = text("{{ b }} {% for x in items %}{{ x }}{% endfor %} {{ a|upper }}")
    assert variables_used(template) == {"a", "b", "items"}
    assert template.variables == {n: VariableSpec() for n in ("a", "b", "items")}
    assert all(spec.required and spec.type == "string" for spec in template.variables.values())
    with pytest.raises(InvalidInput) as caught:
        render(template, {"a": "x", "items": "yz"})
    assert caught.value.param == "variables.b"


def test_a_declared_schema_must_declare_every_variable_used() -> None:
    with pytest.raises(InvalidInput) as caught:
        chat(("system", "hi"), ("user", "{{ q }} {{ extra }}"), variables={"q": {}})
    assert caught.value.param == "variables"
    assert "template.messages.1.content" in caught.value.detail
    assert "'extra'" in caught.value.detail
    # declared but unused is fine; the empty schema declares nothing
    assert text("plain", {"unused": {}}).variables.keys() == {"unused"}
    with pytest.raises(InvalidInput):
        text("{{ config }}", {})


def test_a_syntax_error_names_the_message() -> None:
    messages = [("system", "ok"), ("user", "ok"), ("assistant", "ok"), ("user", "{{ x ")]
    with pytest.raises(InvalidInput) as caught:
        chat(*messages)
    assert caught.value.param == "template.messages.3.content"
    assert "line 1" in caught.value.detail
    # the model itself raises pydantic's error at the same place (a 422 as a body)
    with pytest.raises(ValidationError) as raw:
        PromptTemplate.model_validate(
            {"template": {"type": "chat", "messages": [{"role": "user", "content": "{% if %}"}]}}
        )
    assert raw.value.errors()[0]["loc"] == ("template", "messages", 0, "content")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"type": "chat", "messages": [{"role": "tool", "content": "x"}]},
            "template.messages.0.role",
        ),
        ({"type": "chat", "messages": []}, "template.messages"),
        (
            {"type": "chat", "messages": [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)},
            "template.messages",
        ),
        (
            {"type": "chat", "messages": [{"role": "user", "content": "x" * 100_001}]},
            "template.messages.0.content",
        ),
        ({"type": "text", "text": "x" * 100_001}, "template.text"),
        ({"type": "text"}, "template"),
        ({"type": "chat", "text": "x"}, "template"),
        ({"type": "text", "text": "x", "messages": [{"role": "user", "content": "x"}]}, "template"),
        ({"type": "html", "text": "x"}, "template.type"),
        ({"type": "text", "text": "a\x00b"}, "template.text"),
        ({"type": "text", "text": "x", "extra": 1}, "template.extra"),
    ],
)
def test_bad_shapes_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_template({"template": body})
    assert caught.value.param == param


@pytest.mark.parametrize(
    "source",
    [
        '{% include "other" %}',
        '{% import "macros" as m %}',
        '{% from "macros" import m %}',
        '{% extends "base" %}',
        "{{ x|attr('__class__') }}",  # filters left out of the curated set
        "{{ x|batch(3) }}",
        "{{ x|random }}",
        "{{ x|pprint }}",
        "{{ x|wordwrap(5) }}",
        "{% break %}",  # extensions are off
        "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    ],
)
def test_templates_that_cannot_be_one_prompt_are_refused_when_saved(source: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        text(source)
    assert caught.value.param == "template.text"


@pytest.mark.parametrize("name", ["loop", "range", "namespace", "self", "caller", "1x", "a-b", ""])
def test_reserved_and_malformed_variable_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        text("plain", {name: {}})
    assert caught.value.param == "variables"


def test_variable_specs() -> None:
    assert VariableSpec.model_validate({"default": "x"}).required is False
    assert VariableSpec.model_validate({"type": "integer", "default": 3.0}).default == 3
    for bad in (
        {"required": True, "default": "x"},
        {"type": "number", "default": "x"},
        {"type": "number", "max_length": 3},
        {"type": "string", "max_length": 2, "default": "long"},
        {"type": "date"},
        {"max_length": -1},
    ):
        with pytest.raises(ValidationError):
            VariableSpec.model_validate(bad)


# variables --------------------------------------------------------------------------

SCHEMA = {
    "s": {"type": "string", "max_length": 5},
    "n": {"type": "number", "required": False},
    "i": {"type": "integer", "required": False},
    "b": {"type": "boolean", "required": False},
    "a": {"type": "array", "required": False, "max_length": 3},
    "o": {"type": "object", "required": False},
}
TYPED = text("{{ s }}|{{ n }}|{{ i }}|{{ b }}|{{ a|join(',') }}|{{ o.k }}", SCHEMA)


def test_typed_variables_render() -> None:
    rendered = render(
        TYPED, {"s": "hey", "n": 1.5, "i": 2.0, "b": True, "a": [1, 2], "o": {"k": "v"}}
    )
    assert rendered.text == "hey|1.5|2|True|1,2|v"


@pytest.mark.parametrize(
    ("variables", "param"),
    [
        ({"s": "x", "zzz": 1}, "variables.zzz"),
        ({}, "variables.s"),
        ({"s": None}, "variables.s"),
        ({"s": 1}, "variables.s"),
        ({"s": "toolong"}, "variables.s"),
        ({"s": "x", "n": True}, "variables.n"),
        ({"s": "x", "n": "1"}, "variables.n"),
        ({"s": "x", "n": float("nan")}, "variables.n"),
        ({"s": "x", "i": 1.5}, "variables.i"),
        ({"s": "x", "b": 1}, "variables.b"),
        ({"s": "x", "a": "abc"}, "variables.a"),
        ({"s": "x", "a": [1, 2, 3, 4]}, "variables.a"),
        ({"s": "x", "a": [object()]}, "variables.a.0"),
        ({"s": "x", "o": []}, "variables.o"),
        ({"s": "x", "o": {1: "v"}}, "variables.o"),
        ({"s": "x", "o": {"k": b"bytes"}}, "variables.o.k"),
        ({"s": "a\x00"}, "variables.s"),
        ({"s": "x", "n": 1}, "variables.i"),  # given, but the template prints an optional one
    ],
)
def test_bad_variables_name_the_variable(variables: dict[str, Any], param: str) -> None:
    if param == "variables.i":  # every optional one but i is given
        variables = {**variables, "b": False, "a": [], "o": {"k": 1}}
    with pytest.raises(InvalidInput) as caught:
        render(TYPED, variables)
    assert caught.value.param == param


def test_variables_must_be_an_object() -> None:
    with pytest.raises(InvalidInput) as caught:
        render(TYPED, ["s"])  # type: ignore[arg-type]  # what a JSON body may hold
    assert caught.value.param == "variables"


def test_defaults_and_optional_variables() -> None:
    template = text(
        "{{ greeting }}, {{ name | default('you') }}{% if title is defined %} ({{ title }})"
        "{% endif %}{% for t in tags %}#{{ t }}{% endfor %}",
        {
            "greeting": {"default": "Hello"},
            "name": {"required": False},
            "title": {"required": False},
            "tags": {"type": "array", "default": ["a", "b"]},
        },
    )
    assert render(template, {}).text == "Hello, you#a#b"
    assert render(template, {"name": None, "greeting": None}).text == "Hello, you#a#b"
    rendered = render(template, {"greeting": "Hi", "name": "Ann", "title": "Dr", "tags": []})
    assert rendered.text == "Hi, Ann (Dr)"
    assert rendered.variables == {"greeting": "Hi", "name": "Ann", "title": "Dr", "tags": []}


# what a template can do ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "variables", "expected"),
    [
        (
            "{% for d in docs %}[{{ loop.index }}] {{ d.title }}\n{% endfor %}",
            {"docs": [{"title": "A"}, {"title": "B"}]},
            "[1] A\n[2] B\n",
        ),
        (
            "{% macro item(x) %}- {{ x }}{% endmacro %}{{ item('a') }} {{ item('b') }}",
            {},
            "- a - b",
        ),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            {},
            "6",
        ),
        (
            "{% set ns = namespace(xs=[]) %}{% for i in range(3) %}"
            "{% set ns.xs = ns.xs + [i] %}{% endfor %}{{ ns.xs }}",
            {},
            "[0, 1, 2]",
        ),
        (
            "{{ '{:>5}|{name}'.format('a', name='b') }} {{ '%05.1f %s' % (3.14159, 'x') }}",
            {},
            "    a|b 003.1 x",
        ),
        ("{{ 'x'|center(5) }}|{{ 'a\nb'|indent(2) }}|{{ '%d'|format(7) }}", {}, "  x  |a\n  b|7"),
        (
            "{{ u.name }} {{ u['name'] }} {{ u.items()|list }} {{ u|tojson }}",
            {"u": {"name": "Ann"}},
            "Ann Ann [('name', 'Ann')] {\"name\": \"Ann\"}",
        ),
        (
            "{{ xs|map('upper')|join(', ') }} {{ xs|sort|first }} {{ [1, 2.5]|sum }} "
            "{{ xs|length }}",
            {"xs": ["b", "a"]},
            "B, A a 3.5 2",
        ),
        (
            "{{ 'a,b'.split(',') }} {{ 'ab'.upper() }} {{ '-'.join(['a', 'b']) }} "
            "{{ 'aa'.replace('a', 'bc') }}",
            {},
            "['a', 'b'] AB a-b bcbc",
        ),
        (
            "{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ [0] * 2 }} {{ 'a' ~ 1 }} {{ 7 // 2 }} {{ 7 % 4 }}",
            {},
            "1024 abab [0, 0] a1 3 3",
        ),
        (
            "{% for n in tree recursive %}{{ n.name }}({{ loop(n.children) }}){% endfor %}",
            {"tree": [{"name": "a", "children": [{"name": "b", "children": []}]}]},
            "a(b())",
        ),
        (
            "{% set block %}x{{ 1 }}{% endset %}{% filter upper %}{{ block }}y{% endfilter %}",
            {},
            "X1Y",
        ),
        ("{% raw %}{{ not rendered }}{% endraw %}", {}, "{{ not rendered }}"),
    ],
)
def test_prompt_features(source: str, variables: dict[str, Any], expected: str) -> None:
    assert out(source, **variables) == expected


# attacks ----------------------------------------------------------------------------

ATTACKS = [
    # Python objects
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ [].__class__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% set x = namespace() %}{{ x.__init__.__globals__ }}",
    "{% set x = namespace() %}{% set x.__class__ = 1 %}{{ x.__class__ }}",
    "{{ namespace(a=namespace).a }}",
    "{{ dict.fromkeys(range(3)) }}",
    "{{ ''.join.__self__ }}",
    "{{ '{0.__class__}'.format('x') }}",
    "{{ '{0.__class__.__mro__}'.format(1) }}",
    "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "{{ '%s'|format(''.__class__) }}",
    "{% macro m() %}{% endmacro %}{{ m.__globals__ }}",
    "{% for x in [1] %}{{ loop.__class__ }}{% endfor %}",
    "{{ (1).to_bytes(10, 'big') }}",
    "{{ 'a'.encode() }}",
    "{{ namespace }}",
    "{{ 'x' ~ dict }}",
    "{{ 'x'.upper }}",
    "{{ [range]|string }}",
    # size, before the work
    '{{ "A" * 10**8 }}',
    '{{ 10**8 * "A" }}',
    '{{ "A" * 200001 }}',
    "{{ [1] * 10**8 }}",
    "{{ [('A' * 100000)] * 1000 }}",
    "{{ (range(10000)|list) * 100 }}",
    "{{ 2 ** 100000 }}",
    "{{ 10 ** (10 ** 10) }}",
    "{{ (10 ** 1000) * (10 ** 1000) }}",
    "{{ range(10**9) }}",
    "{{ range(10**100)|list }}",
    "{% set a = 'A' * 200000 %}{{ a ~ a }}",
    "{% set a = 'A' * 200000 %}{{ a + a }}",
    "{% set ns = namespace(x='A') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}"
    "{% endfor %}",
    "{{ '%99999999s' % 'a' }}",
    "{{ '%.99999999f' % 1.0 }}",
    "{{ '%*s' % (10**8, 'a') }}",
    "{{ '%(a)99999999s' % {'a': 1} }}",
    "{{ '%99999999999999999999999s' % 'a' }}",
    "{{ '%99999999s'|format('a') }}",
    "{{ '{:>99999999}'.format('a') }}",
    "{{ '{:>{w}}'.format('a', w=10**8) }}",
    "{{ '{0:{1}}'.format(1, 10**8) }}",
    "{{ '{a}{a}{a}'.format_map({'a': 'A' * 100000}) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'.center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.rjust(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ 'a\nb'|indent(10**8) }}",
    "{{ 'a\nb'|indent('x' * 150000) }}",
    "{{ range(10000)|join('x' * 1000) }}",
    "{{ ('x' * 1000).join(range(1000)|map('string')) }}",
    "{{ ('a' * 1000).replace('', 'b' * 1000) }}",
    "{{ ('a' * 1000)|replace('', 'b' * 1000) }}",
    "{{ range(10)|map('center', 10**8)|join }}",
    "{{ (['A' * 1000] * 100)|tojson(indent=4) }}",
    "{{ ['a'] * 100|sum(start=[]) }}",
    "{{ 'a'.expandtabs(10**9) }}",
    # output, counted as it streams and in buffers
    "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",
    "{% set a = 'A' * 200000 %}{% filter upper %}" + "{{ a }}" * 20 + "{% endfilter %}",
    "{% set a = 'A' * 200000 %}{% set b %}{% for i in range(100) %}{{ a }}{% endfor %}{% endset %}",
    "{% macro a() %}"
    + "x" * 1000
    + "{% endmacro %}{% macro b() %}"
    + "{{ a() }}" * 100
    + "{% endmacro %}{% macro c() %}"
    + "{{ b() }}" * 100
    + "{% endmacro %}{{ c() }}",
    # time and recursion
    "{% for i in range(10**6) %}{% for j in range(10**6) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f() %}{% call f() %}{% endcall %}{% endmacro %}{{ f() }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{% set ns = namespace(x=1) %}{% for i in range(10000) %}{% set ns.x = [ns.x] %}{% endfor %}"
    "{{ ns.x in {} }}",
    "{% set ns = namespace(x=1) %}{% for i in range(2000) %}{% set ns.x = (((((ns.x,),),),),) %}"
    "{% endfor %}{{ [ns.x]|unique|list }}",
    # plain failures
    "{{ 1 / 0 }}",
    "{{ 'a' - 1 }}",
    "{{ 1.5 ** 10000 }}",
    "{{ '%c' % 1114112 }}",
    "{{ undefined_attr.x }}",
]


@pytest.mark.parametrize("source", ATTACKS)
def test_every_attack_ends_in_a_4xx_error(source: str) -> None:
    template = text(source)
    with pytest.raises(BOUNDED) as caught:
        render(template, {name: "s" for name in template.variables})
    message = caught.value.detail
    assert caught.value.param is not None
    assert "class '" not in message and "module" not in message and "<function" not in message
    assert len(message) <= 500


@pytest.mark.parametrize(
    "source",
    [
        "{{ config }}",
        "{{ request }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__ }}",
        "{{ joiner }}",
    ],
)
def test_the_usual_injection_globals_do_not_exist(source: str) -> None:
    with pytest.raises(InvalidInput):  # a declared schema: it uses an undeclared name
        text(source, {})
    template = text(source)  # inferred: a required string, nothing more
    with pytest.raises(InvalidInput):
        render(template, {})
    given_ = {name: "s" for name in template.variables}
    try:
        rendered = render(template, given_).text or ""
    except InvalidInput as exc:
        rendered = exc.detail
    assert "class '" not in rendered and "module" not in rendered


def test_an_object_variable_shows_no_python_attributes() -> None:
    template = text("{{ v.__dict__ }}{{ v.__class__ }}", {"v": {"type": "object"}})
    with pytest.raises(InvalidInput):
        render(template, {"v": {"a": 1}})


def test_what_the_sandbox_does_print_shows_no_python_object() -> None:
    rendered = out("{{ self }} {{ namespace(a=1) }} {{ x.items() }} {{ dict(a=1) }}", x={"k": "v"})
    assert "class '" not in rendered and "module" not in rendered and "0x" not in rendered


def test_a_template_renders_only_through_render() -> None:
    compiled = prompt_sandbox.compile_source("{{ 'A' * 3 }}")
    with pytest.raises(RuntimeError):
        compiled.template.render()


# caps -------------------------------------------------------------------------------


def test_the_output_cap_is_exact_and_covers_all_messages() -> None:
    assert out("{{ 'A' * 200000 }}") == "A" * 200_000
    template = text("{% for i in range(n|int) %}ab{% endfor %}")
    assert render(template, {"n": "5"}, max_output_chars=10).text == "ab" * 5
    with pytest.raises(PayloadTooLarge) as caught:
        render(template, {"n": "6"}, max_output_chars=10)
    assert caught.value.param == "template.text"
    two = chat(("system", "x" * 6), ("user", "y" * 6))
    with pytest.raises(PayloadTooLarge) as caught:
        render(two, {}, max_output_chars=10)
    assert caught.value.param == "template.messages.1.content"


def test_the_largest_chat_template_compiles_once_and_renders() -> None:
    part = "{{ q }} {% if q %}{{ q|upper }}{% endif %} "
    messages = [("user", f"{i}: " + part * 20) for i in range(MAX_MESSAGES)]
    template = chat(*messages)
    rendered = render(template, {"q": "a"})
    assert rendered.messages is not None and len(rendered.messages) == MAX_MESSAGES
    with pytest.raises(InvalidInput) as caught:
        chat(*[("user", "x" * 100_000)] * 2, ("user", "x"))
    assert caught.value.param == "template"


def test_loops_stop_at_the_deadline() -> None:
    busy = text(
        "{% for i in range(10000) %}{{ xs|sort|length }}{% endfor %}", {"xs": {"type": "array"}}
    )
    many = [str(i) for i in range(20_000)]
    with pytest.raises(InvalidInput, match="longer than"):
        render(busy, {"xs": many}, timeout_s=0.05)
    silent = text("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}")
    assert render(silent, {}).text == ""
    with pytest.raises(InvalidInput, match="longer than"):
        render(silent, {}, timeout_s=0.0)


def test_limits_are_what_the_docstring_says() -> None:
    assert out("{{ range(10000)|list|length }}") == str(prompt_limits.MAX_RANGE)
    with pytest.raises(InvalidInput, match=str(prompt_limits.MAX_ITERATIONS)):
        out("{% for i in range(1000) %}{% for j in range(101) %}{% endfor %}{% endfor %}")
    depth = prompt_limits.MAX_CALL_DEPTH
    nested = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% else %}ok{% endif %}{% endmacro %}"
    assert out(nested + f"{{{{ f({depth - 1}) }}}}") == "ok"
    with pytest.raises(InvalidInput, match="nest"):
        out(nested + f"{{{{ f({depth}) }}}}")


# diffs ------------------------------------------------------------------------------


def test_diff_between_two_versions() -> None:
    v1 = chat(("system", "Be brief."), ("user", "{{ q }}"), variables={"q": {}})
    v2 = chat(
        ("system", "Be brief and kind."),
        ("user", "{{ q }}"),
        variables={"q": {"max_length": 100}},
    )
    assert diff(v1, v1) == []
    lines = diff(v1, v2, a_label="v1", b_label="v2")
    assert lines[:2] == ["--- v1", "+++ v2"]
    assert "-Be brief." in lines and "+Be brief and kind." in lines
    assert "+  max_length: 100" in lines
    assert canonical_text(v1) == (
        "[system]\nBe brief.\n[user]\n{{ q }}\n[variables]\nq:\n  required: true\n  type: string\n"
    )
    as_text = text("{{ q }}", {"q": {}})
    assert "-[system]" in diff(v1, as_text) and "+[text]" in diff(v1, as_text)


# properties -------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
ODD = st.sampled_from([object(), b"bytes", {1: 2}, (1, 2), {"k": {3}}, float("inf"), "\x00"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(SCHEMA)) | st.text(max_size=5), JSON | ODD, max_size=8))
def test_random_variables_end_in_a_render_or_invalid_input(variables: dict[str, Any]) -> None:
    try:
        rendered = render(TYPED, variables, timeout_s=0.5)
    except BOUNDED as exc:
        assert exc.param is not None
    else:
        assert rendered.text is not None


TOKENS = [
    "{{", "}}", "{%", "%}", "{#", "#}", " ", "x", "y", "ns", "for", "in", "endfor", "if",
    "endif", "else", "set", "=", "macro", "endmacro", "m()", "range(", ")", "(", "[", "]",
    ",", "'a'", '"b"', "10", "99999", "**", "*", "+", "%", "~", "|", "upper", "join",
    "format", "center(", ".", "__class__", "loop", "namespace()", "raw", "endraw", "filter",
    "endfilter", "call", "endcall", "caller()", "recursive", "-", "/", "not", "and", "\n",
    "'%9s'", "'{:>9}'", "ljust(", "replace(", "x.y", "1.5", "none", "is", "defined",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60) | st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_random_templates_parse_or_are_invalid_input(source: str) -> None:
    try:
        template = text(source)
    except InvalidInput as exc:
        assert exc.param is not None
        return
    try:
        render(template, {name: "9" for name in template.variables}, timeout_s=0.2)
    except BOUNDED as exc:
        assert exc.param is not None
