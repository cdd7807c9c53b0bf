"""`client.prompts` against the real app on loopback: local rendering, and the cache
that answers while the server is away (really stopped, or answering 5xx)."""

from __future__ import annotations

import http.server
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.testclient import TestClient

from shipyard import AsyncClient, Client, ShipyardAPIError
from shipyard.errors import InvalidInput
from tests.gateway.conftest import Env, make_env
from tests.support import free_port, live_server

CHAT = {
    "type": "chat",
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
}
VARIABLES = {
    "company": {"type": "string", "default": "Acme"},
    "question": {"type": "string", "max_length": 50},
}


def _key(client: TestClient) -> str:
    return client.headers["Authorization"].split(" ", 1)[1]


@contextmanager
def answering_503(port: int) -> Iterator[None]:
    """A real server on `port` that answers every request 503 (a proxy whose app is down)."""

    class Down(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"title": "Unavailable", "detail": "down"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Down)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_get_renders_locally_and_the_cache_answers_when_the_server_is_away(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    key, cache = _key(sqlite_client), tmp_path / "cache"
    port = free_port()
    with live_server(sqlite_client.app, port=port) as url, Client(url, key, cache_dir=cache) as c:
        c.prompts.push("support-answer", CHAT, variables=VARIABLES, model="support")
        c.prompts.set_alias("support-answer", "champion", 1)
        p = c.prompts.get("support-answer@champion")
        assert (p.name, p.version, p.model, p.ref) == (
            "support-answer",
            1,
            "support",
            "support-answer@v1",
        )
        assert not p.from_cache and p.aliases == ["champion"]
        assert p.template.template.type == "chat"
        assert p.render(question="Refund?").messages == [
            {"role": "system", "content": "You answer for Acme."},
            {"role": "user", "content": "Refund?"},
        ]
        assert p.messages({"question": "q", "company": "Beta"})[0]["content"] == (
            "You answer for Beta."
        )
        with pytest.raises(InvalidInput) as bad:
            p.render(question="x" * 51)
        assert bad.value.param == "variables.question"
        text = c.prompts.push("summary", {"type": "text", "text": "Sum up: {{ doc }}"})
        assert text.number == 1
        assert c.prompts.get("summary").messages(doc="d") == [
            {"role": "user", "content": "Sum up: d"}
        ]
        path = c.prompts.cache.path("support-answer@champion")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    # the server is stopped: the same cache answers, and says so
    with Client(url, key, cache_dir=cache) as c:
        p = c.prompts.get("support-answer@champion")
        assert p.from_cache and p.version == 1
        assert p.render(question="q").messages is not None
        with pytest.raises(httpx.ConnectError):
            c.prompts.get("support-answer@never-fetched")
    # another key (another workspace, maybe) has no copy
    with Client(url, "sy-otherkid-secret", cache_dir=cache) as c, pytest.raises(httpx.ConnectError):
        c.prompts.get("support-answer@champion")
    # a 5xx is "away" too; a client error is not
    with answering_503(port), Client(url, key, cache_dir=cache) as c:
        assert c.prompts.get("support-answer@champion").from_cache
        with pytest.raises(ShipyardAPIError) as info:
            c.prompts.get("summary@v9")
        assert info.value.status == 503


def test_a_deleted_prompt_is_not_served_from_the_cache(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    with Client(
        "http://localhost", _key(sqlite_client), http_client=sqlite_client, cache_dir=tmp_path
    ) as c:
        c.prompts.push("p", {"type": "text", "text": "Hi {{ who }}"})
        assert not c.prompts.get("p@1").from_cache
        assert sqlite_client.delete("/api/registry/prompts/p").status_code == 204
        with pytest.raises(ShipyardAPIError) as info:
            c.prompts.get("p@1")
        assert info.value.status == 404


def test_max_age_uses_a_fresh_copy_without_asking(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    with Client(
        "http://localhost", _key(sqlite_client), http_client=sqlite_client, cache_dir=tmp_path
    ) as c:
        c.prompts.push("p", {"type": "text", "text": "one {{ x }}"})
        assert c.prompts.get("p").version == 1
        c.prompts.push("p", {"type": "text", "text": "two {{ x }}"})
        cached = c.prompts.get("p", max_age=3600)  # fresh enough: the server is not asked
        assert cached.version == 1 and cached.from_cache
        asked = c.prompts.get("p", max_age=0)  # never fresh enough
        assert asked.version == 2 and not asked.from_cache
        assert c.prompts.get("p", max_age=3600).version == 2  # the copy was refreshed


def test_the_cache_never_follows_symlinks(sqlite_client: TestClient, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    cache = tmp_path / "cache"
    with Client(
        "http://localhost", _key(sqlite_client), http_client=sqlite_client, cache_dir=cache
    ) as c:
        c.prompts.push("p", {"type": "text", "text": "Hi {{ who }}"})
        path = c.prompts.cache.path("p")
        path.parent.mkdir(parents=True)
        path.symlink_to(victim)
        assert c.prompts.cache.read("p") is None  # a planted link is a miss, not read
        c.prompts.get("p")
        assert victim.read_text() == "keep me" and not path.is_symlink()
        # the scope folder itself a symlink: nothing is written through it
        scope = path.parent
        for f in scope.iterdir():
            f.unlink()
        scope.rmdir()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        scope.symlink_to(elsewhere)
        assert c.prompts.get("p").version == 1  # the get still works
        assert list(elsewhere.iterdir()) == []


def test_cache_dir_from_the_environment(
    sqlite_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_PROMPT_CACHE", str(tmp_path / "env-cache"))
    with Client("http://localhost", _key(sqlite_client), http_client=sqlite_client) as c:
        c.prompts.push("p", {"type": "text", "text": "Hi"})
        c.prompts.get("p@latest")
        assert c.prompts.cache.path("p@latest").is_file()
        assert str(c.prompts.cache.path("p@latest")).startswith(str(tmp_path / "env-cache"))


async def test_async_get(sqlite_client: TestClient, tmp_path: Path) -> None:
    key = _key(sqlite_client)
    with live_server(sqlite_client.app) as url:
        async with AsyncClient(url, key, cache_dir=tmp_path) as c:
            await c.prompts.push("p", {"type": "text", "text": "Hi {{ who }}"})
            p = await c.prompts.get("p")
            assert p.render(who="Ann").text == "Hi Ann" and not p.from_cache
    async with AsyncClient(url, key, cache_dir=tmp_path) as c:
        assert (await c.prompts.get("p")).from_cache


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def test_the_openai_sdk_sends_a_prompt_reference(gw: Env, tmp_path: Path) -> None:
    """The README's call: no messages (`openai.omit`), the reference in extra_body."""
    gw.provider()
    gw.route("support")
    key, _ = gw.key()
    with Client(gw.url, gw.owner_key, cache_dir=tmp_path) as c:
        c.prompts.push("support-answer", CHAT, variables=VARIABLES, model="support")
        c.prompts.set_alias("support-answer", "champion", 1)
    ai = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    raw = ai.chat.completions.with_raw_response.create(
        model="support",
        messages=openai.omit,
        extra_body={"prompt": "support-answer@champion", "variables": {"question": "Refund?"}},
    )
    assert raw.headers["x-shipyard-prompt"] == "support-answer@v1"
    assert raw.parse().choices[0].message.content is not None
    assert gw.upstream.requests[-1]["messages"][1] == {"role": "user", "content": "Refund?"}
    # no model either: the prompt's default model ("support") answers
    raw = ai.chat.completions.with_raw_response.create(
        model=openai.omit,
        messages=openai.omit,
        extra_body={"prompt": "support-answer@champion", "variables": {"question": "q"}},
    )
    assert raw.headers["x-shipyard-route"] == "support"
    # or render in the app, with the SDK
    with Client(gw.url, key, cache_dir=tmp_path) as c:
        messages = c.prompts.get("support-answer@champion").messages(question="Refund?")
    reply = ai.chat.completions.create(model="support", messages=messages)  # type: ignore[arg-type]  # plain dicts, not the SDK's TypedDicts
    assert reply.choices
    assert os.listdir(tmp_path)
