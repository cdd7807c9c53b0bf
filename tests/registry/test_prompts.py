"""Prompts in the registry: versions, rendering in the sandbox, diffs, and the gateway's
`prompt: name@alias` reference (rendered from the snapshot, the version recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.gateway.conftest import Env, make_env

CHAT = {
    "template": {
        "type": "chat",
        "messages": [
            {"role": "system", "content": "You answer for {{ company }}."},
            {"role": "user", "content": "{{ question }}"},
        ],
    },
    "variables": {
        "company": {"type": "string", "default": "Acme"},
        "question": {"type": "string", "max_length": 500},
    },
    "model": "support",
    "params": {"temperature": 0.2},
    "message": "first",
}


def push(client: Any, name: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/registry/prompts/{name}/versions", json=body)


def test_versions_render_and_diff(client: TestClient) -> None:
    r = push(client, "support-answer", CHAT)
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 1
    second = {**CHAT, "message": "friendlier"}
    second["template"] = {
        "type": "chat",
        "messages": [
            {"role": "system", "content": "You answer kindly for {{ company }}."},
            {"role": "user", "content": "{{ question }}"},
        ],
    }
    assert push(client, "support-answer", second).json()["number"] == 2
    r = client.post(
        "/api/registry/prompts/support-answer/render",
        json={"version": "1", "variables": {"question": "Where is my order?"}},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prompt"] == "support-answer@v1" and out["model"] == "support"
    assert out["rendered"]["messages"] == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Where is my order?"},
    ]
    r = client.get("/api/registry/prompts/support-answer/diff", params={"a": 1, "b": 2})
    assert r.status_code == 200
    lines = r.json()["diff"]
    assert "-You answer for {{ company }}." in lines
    assert "+You answer kindly for {{ company }}." in lines
    # variables are checked against the schema, each named
    for variables, param in (
        ({}, "variables.question"),
        ({"question": 3}, "variables.question"),
        ({"question": "x" * 501}, "variables.question"),
        ({"question": "q", "surprise": 1}, "variables.surprise"),
    ):
        r = client.post(
            "/api/registry/prompts/support-answer/render",
            json={"version": "latest", "variables": variables},
        )
        assert r.status_code == 400 and param in r.text, (variables, r.text)


@pytest.mark.parametrize(
    ("template", "param"),
    [
        ({"type": "text", "text": "{{ unclosed"}, "template.text"),
        ({"type": "chat", "messages": [{"role": "user", "content": "{% for %}"}]}, "template"),
        ({"type": "chat", "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"type": "text"}, "template"),
    ],
)
def test_bad_templates_change_nothing(client: TestClient, template: Any, param: str) -> None:
    r = push(client, "p", {"template": template})
    assert r.status_code in (400, 422) and param in r.text, r.text
    assert client.get("/api/registry/prompts").json() == []


def test_undeclared_variables_are_refused(client: TestClient) -> None:
    body = {"template": {"type": "text", "text": "{{ a }} {{ b }}"}, "variables": {"a": {}}}
    r = push(client, "p", body)
    assert r.status_code in (400, 422) and "'b'" in r.text
    # left out, the schema is inferred: each variable a required string
    r = push(client, "p", {"template": {"type": "text", "text": "{{ a }} {{ b }}"}})
    assert r.status_code == 201
    assert r.json()["body"]["variables"] == {
        "a": {"type": "string", "required": True, "description": ""},
        "b": {"type": "string", "required": True, "description": ""},
    }


@pytest.mark.parametrize(
    "attack",
    [
        '{{ "A" * 10**8 }}',
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__ }}",
        '{{ "{0.__class__}".format(x) }}',
        "{% for i in range(10**6) %}{% for j in range(10**6) %}{% endfor %}{% endfor %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ '%99999999s' % x }}",
    ],
)
def test_template_injection_is_refused(client: TestClient, attack: str) -> None:
    r = push(client, "evil", {"template": {"type": "text", "text": attack}, "variables": {"x": {}}})
    if r.status_code == 201:  # it parses: rendering refuses it
        r = client.post("/api/registry/prompts/evil/render", json={"variables": {"x": "1"}})
    assert r.status_code in (400, 413, 422), r.text
    assert "class '" not in r.text and "<module" not in r.text


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def test_the_gateway_renders_a_prompt_reference(gw: Env) -> None:
    gw.provider()
    gw.route("support")
    assert push(gw.admin, "support-answer", CHAT).status_code == 201
    r = gw.admin.put("/api/registry/prompts/support-answer/aliases/champion", json={"version": 1})
    assert r.status_code == 200, r.text
    key, _ = gw.key()
    headers = {"Authorization": f"Bearer {key}"}

    def call(**body: Any) -> httpx.Response:
        return httpx.post(f"{gw.url}/v1/chat/completions", headers=headers, json=body, timeout=30)

    r = call(prompt="support-answer@champion", variables={"question": "Refund?"})
    assert r.status_code == 200, r.text
    assert r.headers["x-shipyard-prompt"] == "support-answer@v1"
    sent = gw.upstream.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Refund?"},
    ]
    assert sent["temperature"] == 0.2  # the version's default, under the caller's
    r = call(prompt="support-answer", variables={"question": "q"}, temperature=0.9)
    assert r.status_code == 200 and gw.upstream.requests[-1]["temperature"] == 0.9
    records = gw.records()
    assert {rec["prompt"] for rec in records} == {"support-answer@v1"}

    # the alias moves: the next call renders the new version, with no redeploy
    second = {
        **CHAT,
        "variables": {**CHAT["variables"], "company": {"type": "string", "default": "Beta"}},
    }
    assert push(gw.admin, "support-answer", second).json()["number"] == 2
    gw.admin.put("/api/registry/prompts/support-answer/aliases/champion", json={"version": 2})
    r = call(prompt="support-answer@champion", variables={"question": "q"})
    assert r.headers["x-shipyard-prompt"] == "support-answer@v2"
    assert gw.upstream.requests[-1]["messages"][0]["content"] == "You answer for Beta."

    # bad references and variables are named
    for body, status, text in (
        ({"prompt": "nope@champion"}, 404, "prompt"),
        ({"prompt": "support-answer@v9", "variables": {"question": "q"}}, 404, "prompt"),
        ({"prompt": "support-answer", "variables": {}}, 400, "variables.question"),
        ({"prompt": "support-answer", "variables": "q"}, 400, "variables"),
        ({"prompt": 3}, 400, "prompt"),
        (
            {"prompt": "support-answer", "messages": [{"role": "user", "content": "x"}]},
            400,
            "prompt",
        ),
    ):
        r = call(**body)
        assert r.status_code == status and text in r.text, (body, r.text)


def test_a_release_ships_its_members_together(gw: Env) -> None:
    """`app@dev/<member>` resolves to the versions the release pins, for routes and for
    prompt references; promoting the release moves both at once."""
    gw.provider()
    gw.admin.post("/api/registry/models", json={"name": "support"})
    for model_id in ("model-one", "model-two"):
        r = gw.admin.post(
            "/api/registry/models/support/versions",
            json={"source": {"kind": "provider", "provider": "fake", "model": model_id}},
        )
        assert r.status_code == 201, r.text
    assert push(gw.admin, "support-answer", {**CHAT, "model": "app-route"}).status_code == 201
    second = {
        **CHAT,
        "model": "app-route",
        "variables": {**CHAT["variables"], "company": {"type": "string", "default": "Beta"}},
    }
    assert push(gw.admin, "support-answer", second).status_code == 201
    gw.admin.post("/api/registry/releases", json={"name": "app"})
    for model_v, prompt_v in ((1, 1), (2, 2)):
        members = [
            {"kind": "model", "name": "support", "version": model_v},
            {"kind": "prompt", "name": "support-answer", "version": prompt_v},
        ]
        r = gw.admin.post("/api/registry/releases/app/versions", json={"members": members})
        assert r.status_code == 201, r.text
    target = {"kind": "registry", "refs": [{"ref": "app@dev/support"}]}
    r = gw.admin.put("/api/gateway/routes/app-route", json={"name": "app-route", "target": target})
    assert r.status_code == 200, r.text
    key, _ = gw.key()
    headers = {"Authorization": f"Bearer {key}"}

    def ask() -> httpx.Response:
        return httpx.post(
            f"{gw.url}/v1/chat/completions",
            headers=headers,
            json={"prompt": "app@dev/support-answer", "variables": {"question": "q"}},
            timeout=30,
        )

    assert ask().status_code == 404  # no dev release yet
    for version, model_id, company in ((1, "model-one", "Acme"), (2, "model-two", "Beta")):
        r = gw.admin.post(
            "/api/registry/promotions",
            json={"kind": "release", "name": "app", "version": version, "environment": "dev"},
        )
        assert r.status_code == 201 and r.json()["state"] == "approved", r.text
        r = ask()
        assert r.status_code == 200, r.text
        assert r.headers["x-shipyard-prompt"] == f"support-answer@v{version}"
        sent = gw.upstream.requests[-1]
        assert sent["model"] == model_id
        assert sent["messages"][0]["content"] == f"You answer for {company}."
    r = gw.admin.put(
        "/api/gateway/routes/bad",
        json={"name": "bad", "target": {"kind": "registry", "refs": [{"ref": "nope@dev/x"}]}},
    )
    assert r.status_code == 404 and "nope" in r.text
