"""The evaluation pages: datasets (versions, items, upload, export links), runs (live
progress, aggregates, results and failures, cancel), the new-run form and the
comparison of runs. Over plain HTTP: rendering, hostile item text escaped, a bad upload
naming its line with nothing written, a viewer reading and refused every change; then
in real headless Chromium, against a scripted upstream on loopback (it echoes the last
user message: `echo: <text>`)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.registry.support import PASSWORD
from tests.support import form_login
from tests.ui.test_tracing_pages import CHROMIUM, XSS

PAIRS = [("France", "echo: France"), ("Spain", "echo: Spain"), ("Chile", "Santiago")]
HTML = {"accept": "text/html"}


def _dataset(env: Env, name: str = "capitals", extra: list[Any] | None = None) -> None:
    items = [{"inputs": {"input": q}, "expected": e} for q, e in PAIRS] + (extra or [])
    r = env.admin.post("/api/datasets", json={"name": name, "items": items, "message": "first"})
    assert r.status_code == 201, r.text


def _start(env: Env, **body: Any) -> str:
    payload = {
        "target": {"kind": "route", "ref": "support"},
        "dataset": "capitals",
        "scorers": [{"name": "exact_match"}, {"name": "contains"}],
        **body,
    }
    r = env.admin.post("/api/evals/runs", json=payload)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _wait(env: Env, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = env.admin.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is still active")


def _prompt(env: Env) -> None:
    prompt = {
        "template": {
            "type": "chat",
            "messages": [{"role": "user", "content": "Capital of {{ input }}?"}],
        },
        "variables": {"input": {"type": "string"}},
        "model": "support",
        "message": "v1",
    }
    assert env.admin.post("/api/registry/prompts/capital/versions", json=prompt).status_code == 201


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        e.provider()
        e.route("support")
        yield e


@contextmanager
def _session(env: Env, email: str, password: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A browser-like client logged in through the form, and the headers HTMX sends."""
    with httpx.Client(base_url=env.url, headers=HTML, timeout=30) as client:
        assert form_login(client, email, password).status_code == 303
        page = client.get("/")
        csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
        yield client, {"x-csrf-token": csrf, "hx-request": "true"}


def _user(env: Env, email: str, role: str) -> None:
    r = env.admin.post("/api/users", json={"email": email, "password": PASSWORD, "role": role})
    assert r.status_code == 201, r.text


def test_pages_render_and_escape_item_text(env: Env) -> None:
    _dataset(env, extra=[{"inputs": {"input": XSS}, "expected": XSS}])
    run_id = _start(env)
    run = _wait(env, run_id)
    assert run["status"] == "completed"
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, _):
        for path in (
            "/datasets",
            "/datasets/capitals",
            "/evals",
            f"/evals/{run_id}",
            f"/evals/{run_id}?failed=true&scorer=exact_match&below=1",
            "/evals/new?dataset=capitals",
        ):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text)
            assert "<script>window.__xss" not in r.text, path
        page = client.get("/datasets/capitals").text
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
        assert "+4" in page and "first" in page
        assert "/api/datasets/capitals/export?version=1&amp;format=openai" in page
        failures = client.get(f"/evals/{run_id}?failed=true&scorer=exact_match&below=1").text
        assert "Santiago" in failures and "echo: France</td>" not in failures
        run_page = client.get(f"/evals/{run_id}").text
        assert 'href="/traces/' in run_page and 'hx-trigger="every 1s"' not in run_page
        bad = client.get(f"/evals/{run_id}?below=x").text
        assert "below: a number" in bad
        # one run is not a comparison; two runs on different datasets are refused
        r = client.get("/evals/compare", params={"runs": run_id})
        assert r.status_code == 400 and "two or more" in r.text
        _dataset(env, "other")
        other = _wait(env, _start(env, dataset="other"))
        r = client.get("/evals/compare", params=[("runs", run_id), ("runs", other["id"])])
        assert r.status_code == 400 and "same dataset" in r.text
        assert client.get("/evals/run_nope").status_code == 404


def test_a_bad_upload_names_the_line_and_writes_nothing(env: Env) -> None:
    _dataset(env)
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        bad = b"input,expected\nFrance,Paris\n\xff\xfe,oops\n"
        r = client.post(
            "/datasets/upload",
            data={"name": "capitals"},
            files={"file": ("more.csv", bad, "text/csv")},
            headers=hx,
        )
        assert r.status_code == 200
        assert 'role="alert">line 3: not UTF-8' in r.text
        wrong = b'{"inputs": {"input": "a"}}\n{"nope": 1}\n'
        r = client.post(
            "/datasets/upload",
            data={"name": "capitals"},
            files={"file": ("more.jsonl", wrong, "application/jsonl")},
            headers=hx,
        )
        assert "line 2" in r.text
        r = client.post(
            "/datasets/upload",
            data={"name": "capitals"},
            files={"file": ("more.txt", b"input\nx\n", "text/plain")},
            headers=hx,
        )
        assert "format: pick CSV or JSONL" in r.text
        r = client.post(
            "/datasets/upload",
            data={"name": "../bad", "create": "1"},
            files={"file": ("x.csv", b"input\nx\n", "text/csv")},
            headers=hx,
        )
        assert 'role="alert">name:' in r.text
    assert [v["version"] for v in env.admin.get("/api/datasets/capitals/versions").json()] == [1]
    assert env.admin.get("/api/datasets/bad").status_code == 404


def test_a_viewer_sees_but_cannot_upload_start_or_cancel(env: Env) -> None:
    _dataset(env)
    with _silent() as base:  # the run stays active until cancelled
        env.provider("silent", base=base)
        env.route("stuck", {"provider": "silent", "model": "m"})
        run_id = _start(env, concurrency=1, target={"kind": "route", "ref": "stuck"})
        _viewer_and_cancel(env, run_id)
    assert env.admin.get(f"/api/evals/runs/{run_id}").json()["status"] == "cancelled"
    assert len(env.admin.get("/api/evals/runs").json()) == 1


@contextmanager
def _silent() -> Iterator[str]:
    """An upstream that accepts connections and never answers (closed on exit)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    finally:
        server.close()
        for conn in held:
            conn.close()
        thread.join(timeout=5)


def _viewer_and_cancel(env: Env, run_id: str) -> None:
    _user(env, "vi@example.com", "viewer")
    with _session(env, "vi@example.com", PASSWORD) as (viewer, hx):
        page = viewer.get(f"/evals/{run_id}")
        assert page.status_code == 200 and "capitals@1" in page.text
        assert "Cancel</button>" not in page.text
        assert "New run" not in viewer.get("/evals").text
        listing = viewer.get("/datasets/capitals")
        assert listing.status_code == 200 and "France" in listing.text
        assert "Upload</button>" not in listing.text
        assert viewer.get("/evals/new").status_code == 403
        r = viewer.post(
            "/evals/new",
            data={"kind": "route", "ref": "support", "dataset": "capitals", "scorer": "contains"},
            headers=hx,
        )
        assert r.status_code == 403
        assert viewer.post(f"/evals/{run_id}/cancel", headers=hx).status_code == 403
        r = viewer.post(
            "/datasets/upload",
            data={"name": "capitals"},
            files={"file": ("x.csv", b"input\nx\n", "text/csv")},
            headers=hx,
        )
        assert r.status_code == 403
    # the admin cancels through the page
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (admin, hx):
        r = admin.post(f"/evals/{run_id}/cancel", headers=hx)
        assert r.status_code == 200 and "Cancelled" in r.text
        again = admin.post(f"/evals/{run_id}/cancel", headers=hx)
        assert 'role="alert">the run is cancelled' in again.text


def test_the_form_refuses_bad_runs_naming_the_field(env: Env) -> None:
    _dataset(env)
    base = {"kind": "route", "ref": "support", "dataset": "capitals", "concurrency": "2"}
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "scorers: pick at least one"),
        ({"scorer": "regex", "config.regex": "{nope"}, "config of regex: not JSON"),
        ({"scorer": "regex", "config.regex": '{"pattern": "("}'}, "scorers.0.config"),
        ({"scorer": "contains", "ref": "missing"}, "target.ref"),
        ({"scorer": "contains", "concurrency": "lots"}, "concurrency: a whole number"),
        ({"scorer": "contains", "concurrency": "99"}, "concurrency"),
    ]
    with _session(env, "admin@example.com", ADMIN_PASSWORD) as (client, hx):
        for extra, said in cases:
            r = client.post("/evals/new", data={**base, **extra}, headers=hx)
            assert r.status_code == 200 and said in r.text, (extra, r.text[-2000:])
        r = client.post("/evals/new", data={**base, "scorer": "contains"}, headers=hx)
        assert r.status_code == 204 and r.headers["hx-redirect"].startswith("/evals/run")
    assert len(env.admin.get("/api/evals/runs").json()) == 1


# In the browser ------------------------------------------------------------------------


@pytest.fixture
def browser_env(env: Env) -> Iterator[tuple[Any, Env]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(accept_downloads=True).new_page()
        page.set_default_timeout(15_000)
        page.goto(env.url + "/login")
        page.fill("input[name=email]", "admin@example.com")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(env.url + "/")
        yield page, env
        browser.close()


@pytest.mark.browser
def test_datasets_upload_in_the_browser(browser_env: tuple[Any, Env], tmp_path: Path) -> None:
    page, env = browser_env
    url = env.url
    first = tmp_path / "capitals.csv"
    first.write_text("input,expected,metadata.region\nFrance,Paris,eu\nPeru,Lima,sa\n")
    page.click("nav >> text=Datasets")
    page.wait_for_url(url + "/datasets")
    assert "No datasets yet" in page.inner_text("#datasets")
    page.fill("#new-dataset input[name=name]", "capitals")
    page.set_input_files("#new-dataset input[type=file]", str(first))
    page.click("#new-dataset button[type=submit]")
    page.wait_for_selector("[role=status]")
    assert "Version 1: +2 items" in page.inner_text("[role=status]")
    page.wait_for_url(url + "/datasets/capitals")
    assert "Paris" in page.inner_text("#items") and "eu" in page.inner_text("#items")

    # a second file on the dataset's page: version 2, what it added
    more = tmp_path / "more.jsonl"
    more.write_text('{"inputs": {"input": "Chile"}, "expected": "Santiago"}\n')
    page.set_input_files("#upload input[type=file]", str(more))
    page.fill("#upload input[name=message]", "add Chile")
    page.click("#upload button[type=submit]")
    page.wait_for_selector("[role=status]:has-text('Version 2')")
    v2 = page.locator("#versions tr[data-version='2']")
    assert "add Chile" in v2.inner_text() and "+1" in v2.inner_text()
    assert page.locator("#items tr[data-item]").count() == 3
    # the older version, as it was
    page.select_option("#items select[name=version]", "1")
    page.click("#items button[type=submit]")
    page.wait_for_url("**/datasets/capitals?version=1*")
    assert page.locator("#items tr[data-item]").count() == 2

    # a bad file: the line named, nothing written
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nx,y\n")
    page.set_input_files("#upload input[type=file]", str(bad))
    page.click("#upload button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "line 1" in page.inner_text("[role=alert]")
    assert page.locator("#versions tr[data-version]").count() == 2

    # an export link downloads the version's items
    with page.expect_download() as download:
        page.click("#versions tr[data-version='2'] a[data-export=jsonl]")
    text = Path(download.value.path()).read_text()
    assert text.count("\n") == 3 and "Santiago" in text


@pytest.mark.browser
def test_start_a_run_and_watch_it_complete(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    _dataset(env)
    url = env.url
    for _ in range(3):
        env.upstream.then("slow", delay=0.3)
    page.click("nav >> text=Evaluations")
    page.wait_for_url(url + "/evals")
    page.click("[data-testid=new-run]")
    page.wait_for_url(url + "/evals/new")
    page.fill("#new-run input[name=ref]", "support")
    page.check("#scorers tr[data-scorer=exact_match] input[type=checkbox]")
    page.check("#scorers tr[data-scorer=regex] input[type=checkbox]")
    page.fill("#scorers tr[data-scorer=regex] input[name='config.regex']", '{"pattern": "^echo"}')
    page.fill("#new-run input[name=concurrency]", "1")
    page.click("#new-run button[type=submit]")
    page.wait_for_url("**/evals/run*")
    # the page polls while the run is active, then reloads with the final numbers
    page.wait_for_selector("#progress[data-status=completed]", timeout=60_000)
    page.wait_for_selector("#aggregates")
    assert page.inner_text("[data-testid=done]") == "3 / 3"
    assert page.inner_text("#aggregates tr[data-scorer=exact_match] [data-testid=mean]") == "0.667"
    assert page.inner_text("#aggregates tr[data-scorer=regex] [data-testid=mean]") == "1.000"
    assert page.locator("#progress button:text-is('Cancel')").count() == 0
    assert page.locator("#results tr[data-item]").count() == 3
    # failures only
    page.check("#result-filters input[name=failed]")
    page.select_option("#result-filters select[name=scorer]", "exact_match")
    page.fill("#result-filters input[name=below]", "1")
    page.click("#result-filters button[type=submit]")
    page.wait_for_url("**failed=true**")
    assert page.locator("#results tr[data-item]").count() == 1
    assert "Santiago" in page.inner_text("#results")
    page.click("#results [data-testid=trace]")
    page.wait_for_url("**/traces/*")
    page.click("nav >> text=Evaluations")
    assert "completed" in page.inner_text("#runs")


@pytest.mark.browser
def test_compare_two_runs_in_the_browser(browser_env: tuple[Any, Env]) -> None:
    page, env = browser_env
    _dataset(env, extra=[{"inputs": {"input": XSS}, "expected": "x"}])
    _prompt(env)
    base = _wait(env, _start(env, name="route"))
    other = _wait(env, _start(env, name="prompt", target={"kind": "prompt", "ref": "capital@1"}))
    assert base["status"] == other["status"] == "completed"
    page.goto(env.url + "/evals")
    page.check(f"#runs tr[data-run={base['id']}] input[type=checkbox]")
    page.check(f"#runs tr[data-run={other['id']}] input[type=checkbox]")
    page.click("#runs button[type=submit]")
    page.wait_for_url("**/evals/compare?*")
    # the list is newest first: the prompt's run is the baseline, the route's wins
    paired = f"#paired tr[data-run={base['id']}][data-scorer=exact_match]"
    assert page.inner_text(f"{paired} td[data-testid=wlt]") == "2 / 0 / 2"
    chart = page.locator("#charts svg[data-chart=exact_match]")
    assert chart.locator("g.bar").count() == 2 and chart.locator("rect").count() == 2
    assert page.locator("#charts svg").count() == 2
    assert page.locator("#items [data-mark=win]").count() == 2
    assert page.locator("#items [data-mark=tie]").count() == 2
    row = page.inner_text("#items tr[data-item] >> nth=0")
    assert "echo: France" in row and "echo: Capital of France?" in row
    assert "<script>" in page.inner_text("#items")
    assert page.evaluate("window.__xss") is None
