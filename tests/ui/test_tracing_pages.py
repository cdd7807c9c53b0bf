"""The tracing pages in real headless Chromium, over spans sent the real way (OTLP
protobuf to `/v1/traces`, and a gateway call): the trace list with filters, search and
older pages, a trace as a tree with timing bars and a span's detail, a huge trace a page
at a time, sessions, the dashboard's charts; hostile span names render as text."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.support import form_login

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
VIEWER_PASSWORD = "quiet-heron-lantern-47"
T0 = time.time_ns() - 60_000_000_000  # the spans start about a minute ago


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _span(
    trace: bytes,
    span: bytes,
    parent: bytes,
    name: str,
    start_ms: float,
    dur_ms: float,
    error: bool = False,
    **attrs: object,
) -> Span:
    base = T0
    return Span(
        trace_id=trace,
        span_id=span,
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=base + int(start_ms * 1e6),
        end_time_unix_nano=base + int((start_ms + dur_ms) * 1e6),
        attributes=[_kv(k.replace("__", "."), v) for k, v in attrs.items()],
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
    )


def send(env: Env, spans: list[Span], service: str = "support-bot") -> None:
    body = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", service)]),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    ).SerializeToString()
    r = httpx.post(
        env.url + "/v1/traces",
        content=body,
        headers={
            "content-type": "application/x-protobuf",
            "authorization": f"Bearer {env.owner_key}",
        },
    )
    assert r.status_code == 200, r.text


def agent_trace(session: str = "s-1") -> tuple[str, list[Span]]:
    """root agent -> chat (tokens, input, output), root -> tool (an error)."""
    t, root, chat, tool = os.urandom(16), os.urandom(8), os.urandom(8), os.urandom(8)
    common = {"session__id": session, "user__id": "u-1"}
    spans = [
        _span(t, root, b"", "support-agent", 0, 900, input__value="where is my zebrafish order?",
              **common),
        _span(t, chat, root, "chat gpt-4o-mini", 100, 500, gen_ai__operation__name="chat",
              gen_ai__request__model="gpt-4o-mini", gen_ai__usage__input_tokens=120,
              gen_ai__usage__output_tokens=30, input__value="the chat prompt about parcels",
              output__value="your parcel ships tomorrow", **common),
        _span(t, tool, root, "execute_tool lookup_order", 650, 200, error=True,
              gen_ai__operation__name="execute_tool", gen_ai__tool__name="lookup_order",
              **common),
    ]  # fmt: skip
    return t.hex(), spans


def hostile_trace() -> tuple[str, list[Span]]:
    t, root = os.urandom(16), os.urandom(8)
    spans = [_span(t, root, b"", XSS, 0, 50, input__value=XSS, session__id=XSS, **{"x__evil": XSS})]
    return t.hex(), spans


def big_trace(n: int) -> tuple[str, list[Span]]:
    t, root = os.urandom(16), os.urandom(8)
    spans = [_span(t, root, b"", "big-root", 0, 10 * n)]
    spans += [_span(t, os.urandom(8), root, f"step-{i:04d}", 1 + 10 * i, 5) for i in range(n)]
    return t.hex(), spans


def seed(env: Env) -> dict[str, str]:
    agent, spans = agent_trace()
    hostile, evil = hostile_trace()
    big, many = big_trace(520)  # past one page of spans (500)
    send(env, spans + evil)
    send(env, many, service="batch-job")
    bulk = []  # past one page of traces (50)
    for i in range(55):
        t = os.urandom(16)
        bulk.append(_span(t, os.urandom(8), b"", f"bulk-{i:02d}", -1000 - i, 1))
    send(env, bulk, service="bulk")
    env.provider()
    env.route("gpt-4o-mini")
    key, _ = env.key("ui-app")
    client = OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    env.app.state.platform.gateway.records.flush()
    env.app.state.platform.tracing.flush()
    return {"agent": agent, "hostile": hostile, "big": big}


@pytest.fixture
def browser_env(tmp_path: Path) -> Iterator[tuple[Any, Env]]:
    from playwright.sync_api import sync_playwright

    for env in make_env(tmp_path):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(env.url + "/login")
            page.fill("input[name=email]", "admin@example.com")
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(env.url + "/")
            yield page, env
            browser.close()


def rows(page: Any) -> Any:
    return page.locator("#traces tbody tr[data-trace]")


def test_trace_pages_in_the_browser(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    ids = seed(env)
    url = env.url

    # the list: newest first, a page of 50, then the older ones
    page.click("nav >> text=Traces")
    page.wait_for_url(url + "/traces")
    assert rows(page).count() == 50
    listed = page.inner_text("#traces")
    assert "shipyard-gateway" in listed and "support-bot" in listed and "batch-job" in listed
    page.click("[data-testid=older]")
    page.wait_for_function(
        "document.querySelectorAll('#traces tbody tr[data-trace]').length == 9"
    )  # 3 + 55 + 1 = 59 traces
    assert "cursor=" in page.url  # pushed: the page can be reloaded or shared
    assert page.locator("[data-testid=older]").count() == 0

    # a filter (route) through HTMX, then status, then full-text search
    page.goto(url + "/traces")
    page.fill("input[name=route]", "gpt-4o-mini")
    page.click("text=Filter")
    page.wait_for_function("document.querySelectorAll('#traces tbody tr[data-trace]').length == 1")
    assert "shipyard-gateway" in page.inner_text("#traces")
    assert "route=gpt-4o-mini" in page.url
    page.fill("input[name=route]", "")
    page.select_option("select[name=status]", "error")
    page.click("text=Filter")
    page.wait_for_selector(f"#traces tr[data-trace='{ids['agent']}']")
    assert rows(page).count() == 1
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "zebrafish")
    page.click("text=Filter")
    page.wait_for_function(
        "document.querySelectorAll('#traces tbody tr[data-trace]').length == 1"
        " && document.querySelector('#traces')?.innerText.includes('support-agent')"
    )
    page.fill("input[name=q]", "")
    page.fill("input[name=attr]", "gen_ai.tool.name=lookup_order")
    page.fill("input[name=min_tokens]", "100")
    page.click("text=Filter")
    page.wait_for_function(
        "document.querySelectorAll('#traces tbody tr[data-trace]').length == 1"
        " && !document.location.search.includes('zebrafish')"
    )
    assert "support-agent" in page.inner_text("#traces")
    page.fill("input[name=min_ms]", "not-a-number")
    page.click("text=Filter")
    page.wait_for_selector("#traces [role=alert]")
    assert "min_ms" in page.inner_text("#traces [role=alert]")

    # a trace: the tree, its timing bars, a span's detail on click
    page.goto(url + "/traces?q=zebrafish")
    page.click("#traces a:has-text('support-agent')")
    page.wait_for_url(url + f"/traces/{ids['agent']}")
    tree = page.locator("#tree tr.span-row")
    assert tree.count() == 3
    assert [tree.nth(i).get_attribute("data-depth") for i in range(3)] == ["0", "1", "1"]
    bars = page.locator("#tree .bar")
    assert bars.count() == 3 and page.locator("#tree .bar.error").count() == 1
    root_bar = bars.nth(0).bounding_box()
    chat_bar = bars.nth(1).bounding_box()
    assert root_bar and chat_bar and chat_bar["x"] > root_bar["x"]  # starts later
    assert chat_bar["width"] < root_bar["width"]  # and is shorter
    assert "where is my zebrafish order?" in page.inner_text("[data-testid=span-input]")
    page.click("#tree a:has-text('chat gpt-4o-mini')")  # in place; the row is selected
    page.wait_for_function(
        "document.querySelector('[data-testid=span-input]')?.innerText.includes('chat prompt')"
    )
    assert "your parcel ships tomorrow" in page.inner_text("[data-testid=span-output]")
    assert page.inner_text("[data-testid=span-tokens]") == "120 in / 30 out"
    assert "gen_ai.request.model" in page.inner_text("[data-testid=span-attributes]")
    assert page.url == url + f"/traces/{ids['agent']}"
    assert "chat gpt-4o-mini" in page.inner_text("#tree tr.selected")
    page.click("#tree tr.span-row:has-text('lookup_order') td:nth-child(3)")  # anywhere on it
    page.wait_for_function(
        "document.querySelector('[data-testid=span-name]')?.innerText.includes('lookup_order')"
    )
    assert "error" in page.inner_text("#span-detail")

    # a huge trace: the first page of spans, then "more"
    page.goto(url + f"/traces/{ids['big']}")
    assert page.locator("#tree tr.span-row").count() == 500
    page.click("[data-testid=more-spans]")
    page.wait_for_selector("#tree tr.span-row:has-text('step-0519')")
    assert page.locator("#tree tr.span-row").count() == 21

    # hostile names and values are text, never markup
    for path in ("/traces", "/traces/sessions", f"/traces/{ids['hostile']}"):
        page.goto(url + path)
        assert XSS in page.inner_text("main"), path
        assert page.evaluate("window.__xss") is None, path
    assert XSS in page.inner_text("[data-testid=span-attributes]")
    assert XSS in page.inner_text("[data-testid=span-input]")

    # sessions and a session's traces
    page.click("nav >> text=Sessions")
    page.wait_for_url(url + "/traces/sessions")
    page.click("#sessions a:text-is('s-1')")
    page.wait_for_url(url + "/traces/sessions/s-1")
    assert rows(page).count() == 1 and "support-agent" in page.inner_text("#traces")
    page.go_back()
    page.click(f"#sessions a:text-is('{XSS}')")  # a session id with a slash, as text
    page.wait_for_selector("main h1 code")
    assert page.inner_text("main h1 code") == XSS
    assert rows(page).count() == 1 and page.evaluate("window.__xss") is None

    # the dashboard: per route, then per model, as server-drawn SVG charts
    page.click("nav >> text=Dashboard")
    page.wait_for_url(url + "/traces/dashboard")
    assert page.locator("svg.chart").count() == 6
    assert page.locator("svg.chart[data-chart=requests] circle.point").count() >= 1
    assert page.locator("svg.chart[data-chart=latency] circle.point").count() >= 3
    assert "gpt-4o-mini" in page.inner_text("#totals")
    page.select_option("select[name=by]", "model")
    page.click("text=Show")
    page.wait_for_url("**/traces/dashboard?*by=model*")
    totals = page.inner_text("#totals")
    assert "Model" in totals and "gpt-4o-mini" in totals


def test_viewers_see_the_pages_and_strangers_are_sent_to_log_in(tmp_path: Path) -> None:
    for env in make_env(tmp_path):
        agent, spans = agent_trace()
        send(env, spans)
        env.app.state.platform.tracing.flush()
        body = {"email": "vera@example.com", "password": VIEWER_PASSWORD, "role": "viewer"}
        r = env.admin.post("/api/users", json=body)
        assert r.status_code == 201, r.text
        html = {"accept": "text/html"}
        with httpx.Client(base_url=env.url, headers=html) as browser:
            for path in ("/traces", f"/traces/{agent}", "/traces/dashboard"):
                r = browser.get(path)
                assert r.status_code == 303 and r.headers["location"] == "/login", path
            assert form_login(browser, "vera@example.com", VIEWER_PASSWORD).status_code == 303
            pages = (
                "/traces",
                "/traces?range=1h&status=error&q=zebrafish",
                f"/traces/{agent}",
                "/traces/sessions",
                "/traces/sessions/s-1",
                "/traces/dashboard?range=1h&by=model",
            )
            for path in pages:
                r = browser.get(path)
                assert r.status_code == 200, (path, r.text[:300])
            assert "support-agent" in browser.get("/traces?q=zebrafish").text
            r = browser.get("/traces", params={"min_ms": "slow"})
            assert r.status_code == 400 and "min_ms" in r.text
            for bad in ("min_cost", "min_tokens", "attr", "range", "status", "since"):
                r = browser.get("/traces", params={bad: "nan"})
                assert r.status_code == 400 and f"{bad}:" in r.text, bad
            r = browser.get("/traces/dashboard", params={"by": "key"})
            assert r.status_code == 400 and "by:" in r.text
            r = browser.get("/traces", params={"min_tokens": "100", "status": "error"})
            assert "support-agent" in r.text
            r = browser.get("/traces?since=2020-01-01T00:00&until=2100-01-01T00:00")
            assert "support-agent" in r.text  # as a datetime-local input sends it (UTC)
            assert "support-agent" not in browser.get("/traces?since=2100-01-01T00:00").text
            r = browser.get("/traces", params={"cursor": "garbage"})
            assert r.status_code == 400 and "cursor" in r.text
            r = browser.get("/traces/" + "0" * 32)
            assert r.status_code == 404
            chat = spans[1].span_id.hex()
            r = browser.get(f"/traces/{agent}/spans/{chat}")  # the link, opened on its own
            assert r.status_code == 200 and "<html" in r.text and "chat prompt" in r.text
            r = browser.get(f"/traces/{agent}/spans/{chat}", headers={"hx-request": "true"})
            assert r.status_code == 200 and "<html" not in r.text and "chat prompt" in r.text
        # another workspace sees none of it, even by id
        assert env.admin.post("/api/workspaces", json={"slug": "other"}).status_code == 201
        with httpx.Client(base_url=env.url, headers=html) as browser:
            assert form_login(browser, "admin@example.com", ADMIN_PASSWORD).status_code == 303
            csrf = browser.get("/traces").text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
            r = browser.post(
                "/workspace", data={"workspace": "other"}, headers={"x-csrf-token": csrf}
            )
            assert r.status_code == 204, r.text
            assert "support-agent" not in browser.get("/traces").text
            assert browser.get(f"/traces/{agent}").status_code == 404
            hx = {"hx-request": "true"}
            r = browser.get(f"/traces/{agent}/spans/{chat}", headers=hx)
            assert r.status_code == 404 and "chat prompt" not in r.text
            assert "s-1" not in browser.get("/traces/sessions").text
        app_key, _ = env.key("app-only")  # an app key sends traces; it does not read them
        r = httpx.get(env.url + "/traces", headers={"authorization": f"Bearer {app_key}", **html})
        assert r.status_code == 403
