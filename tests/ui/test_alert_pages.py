"""The alert and drift pages in real headless Chromium: a rule created through the form
(bad input named on the page, the signing secret shown once), silenced, a test
notification that reaches a webhook receiver on loopback and shows in the history,
disabled, deleted; drift per route over spans sent the real way (OTLP JSON), PSI figures
and their chart; hostile input renders as text. Then over plain HTTP: viewers read, and
are refused every change; strangers are sent to log in."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from shipyard.errors import InvalidInput
from tests.conftest import ADMIN_PASSWORD
from tests.gateway.conftest import Env, make_env
from tests.support import form_login
from tests.tracing.test_alerts import (
    Receiver,
    call,
    evaluate,
    receiver,  # noqa: F401 - a fixture
    send_spans,
)
from tests.tracing.test_drift import ORDERS, TAXES, send
from tests.ui.test_tracing_pages import XSS, browser_env  # noqa: F401 - a fixture

VIEWER_PASSWORD = "quiet-heron-lantern-47"
URL = "/api/tracing/alerts"


def audit_actions(env: Env, **params: str) -> list[dict[str, Any]]:
    r = env.admin.get("/api/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def fill_rule(page: Any, receiver_url: str, **fields: str) -> None:
    values = {
        "name": "errors-high",
        "threshold": "0.5",
        "route": "support",
        "url": receiver_url,
        **fields,
    }
    for name, value in values.items():
        page.fill(f"#new-rule-form input[name={name}]", value)
    page.select_option("#new-rule-form select[name=metric]", "error_rate")
    page.select_option("#new-rule-form select[name=comparator]", ">")


def create(page: Any) -> None:
    page.click("#new-rule-form button[type=submit]")


def rule_row(page: Any, name: str) -> Any:
    return page.locator("#rules tr[data-rule]", has=page.locator(f"td:text-is('{name}')"))


@pytest.mark.browser
def test_alert_pages_in_the_browser(
    browser_env: tuple[Any, Env],  # noqa: F811 - the imported fixture
    receiver: Receiver,  # noqa: F811
) -> None:
    page, env = browser_env
    url = env.url
    page.click("nav >> text=Alerts")
    page.wait_for_url(url + "/traces/alerts")
    assert "No alert rules yet." in page.inner_text("#rules")

    # a bad threshold: the message names the field, the form keeps what was typed
    fill_rule(page, receiver.url, threshold="lots")
    page.check("#new-rule-form input[name=allow_internal]")
    create(page)
    page.wait_for_selector("main [role=alert]")
    assert page.inner_text("main [role=alert]").startswith("threshold:")
    assert page.input_value("#new-rule-form input[name=name]") == "errors-high"
    assert "No alert rules yet." in page.inner_text("#rules")
    failed = audit_actions(env, action="ui.trace_alerts_create", outcome="failed")
    assert failed and "threshold" in failed[0]["detail"]

    # a hostile name is refused (and shown as text); a hostile route is kept as text
    fill_rule(page, receiver.url, name=XSS)
    create(page)
    page.wait_for_selector("main [role=alert]:has-text('name:')")
    fill_rule(page, receiver.url, name="hostile-route", route=XSS, threshold="0.9")
    page.check("#new-rule-form input[name=allow_internal]")
    create(page)
    page.wait_for_selector("[data-testid=rule-secret]")
    assert XSS in page.inner_text("#rules")
    assert page.evaluate("window.__xss") is None

    # the rule, its secret shown once
    fill_rule(page, receiver.url)
    page.check("#new-rule-form input[name=allow_internal]")
    create(page)
    page.wait_for_selector("#new-rule:has-text('errors-high')")
    secret = page.inner_text("[data-testid=rule-secret]")
    assert secret.startswith("whsec_")
    row = rule_row(page, "errors-high")
    assert "error_rate" in row.inner_text() and "> 0.5" in row.inner_text()
    assert "route=support" in row.inner_text() and receiver.url in row.inner_text()
    assert row.locator("[data-testid=rule-state]").inner_text().startswith("ok")
    page.reload()
    assert page.locator("[data-testid=rule-secret]").count() == 0
    assert secret not in page.content()
    created = audit_actions(env, action="ui.trace_alerts_create", outcome="success")
    assert "name=errors-high metric=error_rate > 0.5" in created[0]["detail"]

    # edit it: a bad threshold names the field and changes nothing; a good edit saves
    # the new definition, keeps the secret (no new one shown) and is audited
    edit = rule_row(page, "errors-high").locator("details.edit-rule")
    edit.locator("summary").click()
    edit.locator("input[name=threshold]").fill("lots")
    edit.locator("button:text-is('Save')").click()
    page.wait_for_selector("main [role=alert]")
    assert page.inner_text("main [role=alert]").startswith("threshold:")
    assert "> 0.5" in rule_row(page, "errors-high").inner_text()
    edit = rule_row(page, "errors-high").locator("details.edit-rule")
    edit.locator("summary").click()
    assert edit.locator("input[name=route]").input_value() == "support"
    assert edit.locator("input[name=url]").input_value() == receiver.url
    edit.locator("input[name=threshold]").fill("0.7")
    edit.locator("input[name=window_seconds]").fill("600")
    edit.locator("button:text-is('Save')").click()
    page.wait_for_selector("main [role=status]:has-text('Rule errors-high saved.')")
    row = rule_row(page, "errors-high")
    assert "> 0.7" in row.inner_text() and "600 s" in row.inner_text()
    assert page.locator("[data-testid=rule-secret]").count() == 0
    edited = audit_actions(env, action="ui.trace_alerts_edit", outcome="success")
    assert "name=errors-high metric=error_rate > 0.7" in edited[0]["detail"]

    # silence it for an hour, then lift it
    assert rule_row(page, "errors-high").locator("[data-testid=rule-silenced]").inner_text() == "–"
    rule_row(page, "errors-high").locator("button:text-is('Silence 1h')").click()
    page.wait_for_selector("main [role=status]:has-text('silenced until')")
    silenced = rule_row(page, "errors-high").locator("[data-testid=rule-silenced]").inner_text()
    hour = datetime.now(UTC) + timedelta(hours=1)
    assert silenced[:10] == hour.strftime("%Y-%m-%d")
    assert audit_actions(env, action="ui.trace_alerts_silence")[0]["detail"].startswith(
        "silenced_until=20"
    )
    rule_id = rule_row(page, "errors-high").get_attribute("data-rule")
    r = env.admin.get(f"{URL}/{rule_id}")
    assert r.json()["silenced_until"] is not None
    rule_row(page, "errors-high").locator("button:text-is('Unsilence')").click()
    page.wait_for_selector("main [role=status]:has-text('no longer silenced')")
    assert env.admin.get(f"{URL}/{rule_id}").json()["silenced_until"] is None

    # a test notification: at the receiver (signed with the secret shown), in the history
    rule_row(page, "errors-high").locator("button:text-is('Send test')").click()
    page.wait_for_selector("main [role=status]:has-text('Test notification')")
    assert page.inner_text("main [role=status]") == "Test notification: delivered (1 attempt)."
    assert len(receiver.requests) == 1
    headers, raw = receiver.requests[0]
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-shipyard-signature"], expected)
    assert orjson.loads(raw)["event"] == "test"
    assert audit_actions(env, action="ui.trace_alerts_test")[0]["detail"] == (
        "test delivery=delivered"
    )
    page.click("text=History: firings, resolves and tests")
    page.wait_for_url(url + "/traces/alerts/history")
    event = page.locator("#history tr[data-event]")
    assert event.count() == 1
    assert "errors-high" in event.inner_text()
    assert event.locator("[data-testid=event-kind]").inner_text() == "test"
    assert event.locator("[data-testid=event-delivery]").inner_text() == "delivered"
    assert event.locator("[data-testid=event-attempts]").inner_text() == "1"
    assert receiver.url in event.inner_text() and "HTTP 200" in event.inner_text()
    page.select_option("select[name=rule]", label="hostile-route")
    page.click("text=Show")
    page.wait_for_url("**/traces/alerts/history?rule=*")
    assert "Nothing has fired yet." in page.inner_text("#history")

    # disable and enable again
    page.goto(url + "/traces/alerts")
    rule_row(page, "errors-high").locator("button:text-is('Disable')").click()
    page.wait_for_selector("main [role=status]:has-text('disabled')")
    state = rule_row(page, "errors-high").locator("[data-testid=rule-state]")
    assert state.inner_text().startswith("disabled")
    assert env.admin.get(f"{URL}/{rule_id}").json()["enabled"] is False
    rule_row(page, "errors-high").locator("button:text-is('Enable')").click()
    page.wait_for_selector("main [role=status]:has-text('enabled')")
    assert env.admin.get(f"{URL}/{rule_id}").json()["enabled"] is True
    assert "enabled=True" in audit_actions(env, action="ui.trace_alerts_enable")[0]["detail"]

    # delete it (after the confirmation), with its history
    page.once("dialog", lambda dialog: dialog.accept())
    rule_row(page, "errors-high").locator("button:text-is('Delete')").click()
    page.wait_for_selector("main [role=status]:has-text('deleted')")
    assert rule_row(page, "errors-high").count() == 0
    assert env.admin.get(f"{URL}/{rule_id}").status_code == 404
    assert env.admin.get(f"{URL}/history").json() == []
    assert audit_actions(env, action="ui.trace_alerts_delete")[0]["detail"] == "name=errors-high"
    assert page.evaluate("window.__xss") is None

    # drift: a route whose calls got slower and longer in the last hour
    now = datetime.now(UTC).replace(microsecond=0)
    send(env, now - timedelta(minutes=100), ORDERS, n=60, latency_ms=200, seed=1)
    send(env, now - timedelta(minutes=40), TAXES, n=60, latency_ms=900, seed=2)
    embedder = env.app.state.platform.tracing.alerts.drift.embedder
    page.click("nav >> text=Drift")
    page.wait_for_url(url + "/traces/drift")
    assert page.locator("#drift").count() == 0
    assert page.locator("#drift-routes option[value=support]").count() == 1  # offered
    page.fill("input[name=route]", "support")
    page.click("text=Compare")
    page.wait_for_selector("#drift")
    windows = page.inner_text("[data-testid=drift-windows]")
    assert "60 calls" in windows and windows.count("60 calls") == 2
    latency = page.locator("#psi tr[data-feature=Latency]")
    assert float(latency.locator("[data-testid=psi]").inner_text()) > 1.0
    assert "shift" in latency.inner_text()
    length = page.locator("#psi tr[data-feature='Input length'] [data-testid=psi]")
    assert float(length.inner_text()) > 0.25
    assert page.locator("#psi tr[data-feature=Score]").inner_text().endswith("no data")
    assert "not asked for" in page.inner_text("#psi")
    assert page.locator("svg.chart[data-chart=psi] rect.bar").count() == 3
    assert page.locator("svg.chart[data-chart=psi] rect.bar.shift").count() >= 2
    assert embedder._model is None  # the model was not loaded for the page
    page.fill("input[name=score_attribute]", "feedback.score")  # a numeric attribute
    page.click("text=Compare")
    page.wait_for_function(
        "!(document.querySelector('#psi')?.innerText ?? 'no data').includes('no data')"
    )
    score = page.locator("#psi tr[data-feature=Score] [data-testid=psi]").inner_text()
    assert 0 <= float(score) < 0.25  # the same feedback on both sides
    assert page.locator("svg.chart[data-chart=psi] rect.bar").count() == 4
    assert "score_attribute=feedback.score" in page.url
    # no spans on a route: nothing to embed, even when asked
    page.goto(url + "/traces/drift?route=nothing-here&embeddings=1")
    assert page.inner_text("[data-testid=drift-windows]").count("0 calls") == 2
    assert page.inner_text("#psi [data-testid=embedding-distance]") == "–"
    assert embedder._model is None
    # a hostile route is text; a bad window is named
    page.goto(url + "/traces/drift?" + urlencode({"route": XSS}))
    assert XSS in page.inner_text("#drift h3")
    assert page.evaluate("window.__xss") is None
    page.goto(url + "/traces/drift?route=support&current_since=2026-13-01T00:00")
    assert page.inner_text("main [role=alert]").startswith("current_since:")


def test_viewers_read_and_are_refused_changes_and_strangers_log_in(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811 - the imported fixture
) -> None:
    for env in make_env(tmp_path):
        body = {
            "name": "slow",
            "metric": "latency_p90_ms",
            "comparator": ">",
            "threshold": 1000,
            "targets": [{"url": receiver.url}],
            "allow_internal": True,
        }
        r = env.admin.post(URL, json=body)
        assert r.status_code == 201, r.text
        rule_id = r.json()["id"]
        r = env.admin.post(f"{URL}/{rule_id}/test")
        assert r.status_code == 200 and r.json()["delivery_status"] == "delivered", r.text
        engine = env.app.state.platform.tracing.alerts
        call(env, engine.stop())  # no background rounds: this test evaluates
        engine.notifier.backoff = 0.01
        busy = {**body, "name": "busy", "metric": "requests", "route": "support"}
        r = env.admin.post(URL, json={**busy, "threshold": 0})
        assert r.status_code == 201, r.text
        send_spans(env, 2)
        assert len(evaluate(env)) == 1  # firing
        html = {"accept": "text/html"}
        with httpx.Client(base_url=env.url, headers=html) as stranger:
            for path in ("/traces/alerts", "/traces/alerts/history", "/traces/drift"):
                r = stranger.get(path)
                assert r.status_code == 303 and r.headers["location"] == "/login", path
            r = stranger.post("/traces/alerts", data={"name": "x"})
            assert r.status_code in (401, 303)
        user = {"email": "vera@example.com", "password": VIEWER_PASSWORD, "role": "viewer"}
        assert env.admin.post("/api/users", json=user).status_code == 201
        with httpx.Client(base_url=env.url, headers=html) as viewer:
            assert form_login(viewer, "vera@example.com", VIEWER_PASSWORD).status_code == 303
            page = viewer.get("/traces/alerts")
            assert page.status_code == 200
            assert "slow" in page.text and "latency_p90_ms" in page.text
            assert "new-rule-form" not in page.text and "Send test" not in page.text
            assert '<span class="badge failed">firing</span>' in page.text  # busy, at 2
            csrf = page.text.split('"X-CSRF-Token": "', 1)[1].split('"')[0]
            hx = {"x-csrf-token": csrf, "hx-request": "true"}
            form = {"name": "mine", "metric": "requests", "comparator": ">", "threshold": "1"}
            r = viewer.post("/traces/alerts", data={**form, "url": receiver.url}, headers=hx)
            assert r.status_code == 403 and "tracing:manage" in r.text
            for action, data in (
                ("enabled", {"enabled": "false"}),
                ("edit", {**form, "url": receiver.url}),
                ("silence", {"hours": "1"}),
                ("test", {}),
                ("delete", {}),
            ):
                r = viewer.post(f"/traces/alerts/{rule_id}/{action}", data=data, headers=hx)
                assert r.status_code == 403, action
            history = viewer.get("/traces/alerts/history")
            assert history.status_code == 200 and history.text.count("delivered") == 4
            assert '<td data-testid="event-kind">firing</td>' in history.text
            # ten minutes on, the window holds no calls: resolved, at 0
            assert len(evaluate(env, datetime.now(UTC) + timedelta(minutes=10))) == 1
            history = viewer.get("/traces/alerts/history").text
            firing = history.split('<td data-testid="event-kind">resolved</td>', 1)[1]
            value, threshold = (c.split("</td>")[0] for c in firing.split("<td>")[1:3])
            assert (value, threshold) == ("2", "0")
            assert '<span class="muted">at 0</span>' in history
            assert '<td data-testid="event-attempts">2</td>' in history  # fired, resolved
            assert "firing · delivered · HTTP 200" in history
            assert "resolved · delivered · HTTP 200" in history
            r = viewer.get("/traces/alerts/history", params={"before": "soon"})
            assert r.status_code == 400 and "before:" in r.text
            assert viewer.get("/traces/drift").status_code == 200
            r = viewer.get("/traces/drift", params={"route": "support", "range": "1y"})
            assert r.status_code == 400 and "range:" in r.text
            window = {"current_since": "2026-01-02T00:00", "current_until": "2026-01-01T00:00"}
            r = viewer.get("/traces/drift", params={"route": "support", **window})
            assert r.status_code == 400 and "current_since:" in r.text
        rule = env.admin.get(f"{URL}/{rule_id}").json()
        assert rule["enabled"] is True and rule["silenced_until"] is None  # nothing changed
        assert len(receiver.requests) == 3  # the admin's test, the firing and resolve
        # an administrator's form with a field missing: the page names it (200, for HTMX)
        with httpx.Client(base_url=env.url, headers=html) as admin:
            assert form_login(admin, "admin@example.com", ADMIN_PASSWORD).status_code == 303
            csrf = admin.get("/traces/alerts").text.split('"X-CSRF-Token": "', 1)[1]
            hx = {"x-csrf-token": csrf.split('"')[0], "hx-request": "true"}
            r = admin.post("/traces/alerts", data={"metric": "requests"}, headers=hx)
            assert r.status_code == 200 and "name: Field required" in r.text
            data = {"name": "drifty", "metric": "drift_latency_psi", "comparator": ">"}
            data["url"] = "https://hooks.example.com/alerts"
            r = admin.post("/traces/alerts", data={**data, "threshold": "0.3"}, headers=hx)
            assert "route: a drift metric is computed per route" in r.text
            data = {**data, "route": "support", "threshold": "0.3", "url": "http://10.0.0.1/h"}
            r = admin.post("/traces/alerts", data=data, headers=hx)
            assert "targets.0.url:" in r.text  # internal, and not allowed
            r = admin.post("/traces/alerts/alr_nope/silence", data={"hours": "x"}, headers=hx)
            assert "hours:" in r.text
            r = admin.post("/traces/alerts/alr_nope/delete", headers=hx)
            assert "no alert rule" in r.text
        assert [r["name"] for r in env.admin.get(URL).json()] == ["busy", "slow"]  # no more


def test_the_psi_chart_and_the_drift_windows() -> None:
    from shipyard.tracing.alert_pages import (
        BAR_W,
        LABEL_W,
        VALUE_W,
        drift_windows,
        level,
        psi_chart,
    )
    from shipyard.tracing.drift import DriftReport

    report = DriftReport("r", 10, 10, 0.05, 0.2, 4.0, None, None)
    chart = psi_chart(report)
    widths = {b.label: b.width for b in chart.bars}
    assert widths["Score"] == 0.0 and chart.bars[3].value is None
    assert widths["Latency"] == max(widths.values())
    assert all(LABEL_W + w + VALUE_W <= BAR_W for w in widths.values())  # with its figure
    assert chart.top == 1.0 and widths["Latency"] == BAR_W - LABEL_W - VALUE_W  # full
    assert widths["Input length"] < widths["Output length"] < widths["Latency"]
    assert [label for _, label in chart.marks] == ["0.1", "0.25"]
    assert chart.marks[0][0] < chart.marks[1][0] < LABEL_W + widths["Latency"]
    small = psi_chart(DriftReport("r", 1, 1, 0.0, 0.0, 0.0, 0.0, None))
    assert small.top == 0.3 and all(b.width == 1.0 for b in small.bars)  # a sliver at 0
    assert [level(v) for v in (None, 0.05, 0.1, 0.25, 0.26)] == [
        "none",
        "stable",
        "moderate",
        "moderate",
        "shift",
    ]

    empty = dict.fromkeys(("reference_since", "reference_until", "current_until"), "")
    f = {**empty, "range": "24h", "current_since": "2026-01-02T00:00"}
    f["current_until"] = "2026-01-03T00:00"
    (ref_since, ref_until), (cur_since, cur_until) = drift_windows(f)
    assert cur_since == datetime(2026, 1, 2, tzinfo=UTC) == ref_until  # read as UTC
    assert cur_until - cur_since == ref_until - ref_since == timedelta(days=1)
    f = {**f, "current_since": "", "range": "1h"}  # the hour before current_until
    (_, _), (cur_since, _) = drift_windows(f)
    assert cur_since == datetime(2026, 1, 2, 23, tzinfo=UTC)
    for bad, field in (("range", "range"), ("reference_since", "reference_since")):
        with pytest.raises(InvalidInput, match=f"^{field}:"):
            drift_windows({**f, bad: "later"})
