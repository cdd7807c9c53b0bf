"""Alert rules on the live app: spans sent over `POST /v1/traces`, a rule evaluated over
the store's roll-ups, notifications to a real webhook receiver on loopback (HMAC
verified, the Slack payload), for-duration, resolve, silencing, retries, history and
audit; the outbound-address rules of providers (SSRF) and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from shipyard.errors import NotFound
from shipyard.tracing import alerts
from shipyard.tracing.alert_tables import AlertRuleRow
from shipyard.tracing.spans import MetricPoint
from tests.gateway.conftest import Env, make_env

T = TypeVar("T")
URL = "/api/tracing/alerts"


class Receiver:
    """A webhook receiver on loopback: records each request; answers the scripted
    statuses in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = outer.script.pop(0) if outer.script else 200
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("location", "http://169.254.169.254/")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(b) for _, b in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in make_env(tmp_path):
        engine = e.app.state.platform.tracing.alerts
        call(e, engine.stop())  # no background rounds: the tests evaluate when they say
        engine.notifier.backoff = 0.01
        yield e


def call(env: Env, coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the app's event loop (the engine's sessions live there)."""
    engine = env.app.state.platform.tracing.alerts
    return asyncio.run_coroutine_threadsafe(coro, engine.loop).result(60)


def engine_of(env: Env) -> Any:
    return env.app.state.platform.tracing.alerts


def evaluate(env: Env, now: datetime | None = None) -> list[Any]:
    engine = engine_of(env)
    notices = call(env, engine.evaluate(now))
    call(env, engine.drain())
    return notices


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def send_spans(env: Env | TestClient, n: int, *, errors: int = 0, route: str = "support") -> None:
    """n model-call spans of `route` starting now, the first `errors` of them failed."""
    now = time.time_ns()
    spans = []
    for i in range(n):
        spans.append(
            {
                "traceId": hashlib.md5(f"{now}-{i}".encode()).hexdigest(),
                "spanId": hashlib.md5(f"s{now}-{i}".encode()).hexdigest()[:16],
                "name": "chat gpt-4o-mini",
                "kind": 3,
                "startTimeUnixNano": str(now - 1_000_000),
                "endTimeUnixNano": str(now + 50_000_000),
                "status": {"code": 2 if i < errors else 1},
                "attributes": [
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.request.model", "gpt-4o-mini"),
                    _attr("gen_ai.usage.input_tokens", 10),
                    _attr("gen_ai.usage.output_tokens", 5),
                    _attr("shipyard.route", route),
                ],
            }
        )
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "support-bot")]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    http = env if isinstance(env, TestClient) else env.admin
    r = http.post(
        "/v1/traces", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    app: Any = env.app
    app.state.platform.tracing.flush()


def rule(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "errors",
        "metric": "error_rate",
        "route": "support",
        "window_seconds": 300,
        "comparator": ">",
        "threshold": 0.2,
        "targets": [{"url": receiver.url, "format": "json"}],
        "allow_internal": True,  # the receiver is on loopback (the bootstrap key may)
    }
    body.update(extra)
    return body


def create(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    r = env.admin.post(URL, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-shipyard-signature"], expected)


def history(env: Env, rule_id: str) -> list[dict[str, Any]]:
    r = env.admin.get(f"{URL}/history", params={"rule_id": rule_id})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_rule_fires_to_a_signed_webhook_then_resolves(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in env.admin.get(f"{URL}/{created['id']}").json()  # shown once
    send_spans(env, 4, errors=2)
    send_spans(env, 3, route="other")  # another route: outside the filter

    assert len(evaluate(env)) == 1
    assert len(receiver.requests) == 1
    headers, raw = receiver.requests[0]
    verify(secret, headers, raw)
    assert headers["x-shipyard-event"] == "firing"
    sent = orjson.loads(raw)
    assert sent["event"] == "firing" and sent["value"] == 0.5
    assert sent["rule"]["id"] == created["id"] and sent["rule"]["filter"] == {"route": "support"}
    # a tampered body does not verify
    with pytest.raises(AssertionError):
        verify(secret, headers, raw.replace(b"0.5", b"0.1"))
    now = env.admin.get(f"{URL}/{created['id']}").json()
    assert now["state"] == "firing" and now["last_value"] == 0.5

    assert evaluate(env) == []  # still firing: no second notification
    assert len(receiver.requests) == 1

    # ten minutes on, the window holds no calls: resolved
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert len(evaluate(env, later)) == 1
    headers, raw = receiver.requests[1]
    verify(secret, headers, raw)
    assert orjson.loads(raw)["event"] == "resolved"
    [event] = history(env, created["id"])
    assert event["kind"] == "alert" and event["value"] == 0.5
    assert event["resolved_at"] is not None
    assert event["delivery_status"] == "delivered" and event["attempts"] == 2
    assert [d["event"] for d in event["deliveries"]] == ["firing", "resolved"]
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "ok"


def test_the_slack_payload(env: Env, receiver: Receiver) -> None:
    create(
        env,
        rule(
            receiver,
            metric="requests",
            comparator=">=",
            threshold=2,
            targets=[{"url": receiver.url, "format": "slack"}],
        ),
    )
    send_spans(env, 3)
    evaluate(env)
    [body] = receiver.bodies()
    assert set(body) == {"text"}
    assert body["text"].startswith("[FIRING] errors: requests = 3")
    assert "route=support" in body["text"]


def test_for_duration_must_hold_before_firing(env: Env, receiver: Receiver) -> None:
    created = create(
        env,
        rule(receiver, metric="requests", comparator=">", threshold=0, for_seconds=120),
    )
    send_spans(env, 2)
    start = datetime.now(UTC)
    assert evaluate(env, start) == []
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "pending"
    assert evaluate(env, start + timedelta(seconds=60)) == []
    assert receiver.requests == []
    assert len(evaluate(env, start + timedelta(seconds=121))) == 1
    assert receiver.bodies()[0]["event"] == "firing"
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "firing"


def test_a_pending_rule_that_stops_holding_starts_over(env: Env, receiver: Receiver) -> None:
    created = create(
        env, rule(receiver, metric="requests", comparator=">", threshold=0, for_seconds=120)
    )
    send_spans(env, 1)
    start = datetime.now(UTC)
    evaluate(env, start)
    # the window (300 s) has moved past the call: no longer holds
    evaluate(env, start + timedelta(seconds=400))
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "ok"
    assert receiver.requests == [] and history(env, created["id"]) == []


def test_a_silenced_rule_records_and_sends_nothing(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = env.admin.post(f"{URL}/{created['id']}/silence", json={"until": until})
    assert r.status_code == 200, r.text
    assert r.json()["silenced_until"] is not None
    send_spans(env, 2, errors=2)
    assert evaluate(env) == []
    assert receiver.requests == []
    [event] = history(env, created["id"])
    assert event["silenced"] is True and event["delivery_status"] == "silenced"
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "firing"
    # unsilenced, the resolve is sent
    r = env.admin.post(f"{URL}/{created['id']}/silence", json={"until": None})
    assert r.status_code == 200 and r.json()["silenced_until"] is None
    evaluate(env, datetime.now(UTC) + timedelta(minutes=10))
    assert [b["event"] for b in receiver.bodies()] == ["resolved"]


def test_failed_deliveries_are_retried_then_recorded(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    receiver.script = [500, 503]  # then 200
    send_spans(env, 2, errors=1)
    evaluate(env)
    assert len(receiver.requests) == 3
    [event] = history(env, created["id"])
    assert event["delivery_status"] == "delivered" and event["attempts"] == 3
    # a 4xx other than 429 is final; a redirect is not followed
    receiver.script = [404, 302]
    r = env.admin.post(f"{URL}/{created['id']}/test")
    assert r.status_code == 200, r.text
    assert r.json()["delivery_status"] == "failed" and r.json()["attempts"] == 1
    assert r.json()["deliveries"][0]["code"] == 404
    r = env.admin.post(f"{URL}/{created['id']}/test")
    assert r.json()["delivery_status"] == "failed"
    assert "redirect" in r.json()["deliveries"][0]["error"]
    assert len(receiver.requests) == 5  # the redirect's target was never asked


def test_the_test_notification_and_history(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    r = env.admin.post(f"{URL}/{created['id']}/test")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "test" and r.json()["delivery_status"] == "delivered"
    headers, raw = receiver.requests[0]
    verify(created["secret"], headers, raw)
    assert orjson.loads(raw)["event"] == "test"
    assert [e["kind"] for e in history(env, created["id"])] == ["test"]
    assert env.admin.get(f"{URL}/history").json()[0]["id"] == r.json()["id"]


def test_the_background_evaluation_notifies(env: Env, receiver: Receiver) -> None:
    engine = engine_of(env)
    engine.interval = 0.2
    engine.loop.call_soon_threadsafe(engine.start)
    create(env, rule(receiver, metric="requests", comparator=">", threshold=0))
    send_spans(env, 1)
    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.bodies()[0]["event"] == "firing"


def test_changes_are_audited_and_need_tracing_manage(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    body = rule(receiver, threshold=0.5, name="errors-high")
    r = env.admin.put(f"{URL}/{created['id']}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["threshold"] == 0.5 and r.json()["name"] == "errors-high"
    viewer, _ = env.key("viewer", role="viewer")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    with httpx.Client(base_url=env.url, headers=as_viewer) as c:
        assert c.get(URL).status_code == 200
        assert c.get(f"{URL}/history").status_code == 200
        r = c.post(URL, json=rule(receiver, name="x", allow_internal=False))
        assert r.status_code == 403 and "tracing:manage" in r.json()["detail"]
        assert c.post(f"{URL}/{created['id']}/test").status_code == 403
        assert c.delete(f"{URL}/{created['id']}").status_code == 403
    assert env.admin.delete(f"{URL}/{created['id']}").status_code == 204
    assert env.admin.get(f"{URL}/{created['id']}").status_code == 404
    actions = [e["action"] for e in env.admin.get("/api/audit").json()]
    for action in ("tracing.alerts.create", "tracing.alerts.put", "tracing.alerts.delete"):
        assert action in actions
    entry = env.admin.get("/api/audit", params={"action": "tracing.alerts.put"}).json()[0]
    assert "> 0.5" in entry["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://localhost:9/hook",  # a name resolving to loopback
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 in decimal
        "http://metadata.google.internal/hook",
        "ftp://example.com/hook",
    ],
)
def test_internal_webhook_addresses_are_refused(env: Env, receiver: Receiver, url: str) -> None:
    r = env.admin.post(URL, json=rule(receiver, targets=[{"url": url}], allow_internal=False))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("targets.0.url: ")
    assert env.admin.get(URL).json() == []


def test_allow_internal_needs_a_platform_administrator(env: Env, receiver: Receiver) -> None:
    admin, _ = env.key("ws-admin", role="admin")
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {admin}"}) as c:
        r = c.post(URL, json=rule(receiver))
        assert r.status_code == 403, r.text
        assert "allow_internal" in r.json()["detail"]
        # a public address is fine for a workspace administrator
        r = c.post(
            URL,
            json=rule(receiver, targets=[{"url": "https://93.184.215.14/h"}], allow_internal=False),
        )
        assert r.status_code == 201, r.text
        # a rule a platform administrator allowed internal: its targets may be kept by a
        # workspace administrator, not moved
        internal = create(env, rule(receiver, name="internal"))
        kept = rule(receiver, name="internal", threshold=0.9)
        r = c.put(f"{URL}/{internal['id']}", json=kept)
        assert r.status_code == 200, r.text
        assert r.json()["threshold"] == 0.9 and r.json()["allow_internal"] is True
        moved = rule(receiver, name="internal", targets=[{"url": "http://10.0.0.1/hook"}])
        r = c.put(f"{URL}/{internal['id']}", json=moved)
        assert r.status_code == 403 and "allow_internal" in r.json()["detail"]
        assert env.admin.get(f"{URL}/{internal['id']}").json()["targets"][0]["url"] == receiver.url


def test_a_change_starts_the_state_over(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    send_spans(env, 2, errors=2)
    evaluate(env)
    assert env.admin.get(f"{URL}/{created['id']}").json()["state"] == "firing"
    r = env.admin.put(f"{URL}/{created['id']}", json=rule(receiver, threshold=0.9))
    assert r.status_code == 200 and r.json()["state"] == "ok"
    [event] = history(env, created["id"])
    assert event["resolved_at"] is not None  # closed, without a notification
    assert len(receiver.requests) == 1
    # deleting the rule deletes its history
    assert env.admin.delete(f"{URL}/{created['id']}").status_code == 204
    assert env.admin.get(f"{URL}/history").json() == []


def test_connections_are_checked_again_when_sent(env: Env, receiver: Receiver) -> None:
    """A rule whose stored row says otherwise (written before the checks, or around
    them) still reaches no internal address: literals are refused before connecting,
    names by the resolver."""
    named = receiver.url.replace("127.0.0.1", "localhost")
    for i, url in enumerate((receiver.url, named)):
        created = create(env, rule(receiver, name=f"r{i}", targets=[{"url": url}]))
        with env.app.state.platform.db.transaction() as s:
            s.get(AlertRuleRow, created["id"]).allow_internal = False
        r = env.admin.post(f"{URL}/{created['id']}/test")
        assert r.status_code == 200, r.text
        assert r.json()["delivery_status"] == "failed", r.json()
        error = r.json()["deliveries"][0]["error"]
        # the literal is refused before connecting; the name resolves to nothing allowed
        assert ("internal address" in error) if i == 0 else ("DNS" in error), error
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "happiness"}, "metric"),
        ({"comparator": "=="}, "comparator"),
        ({"window_seconds": 10}, "window_seconds"),
        ({"window_seconds": "long"}, "window_seconds"),
        ({"for_seconds": -1}, "for_seconds"),
        ({"threshold": "high"}, "threshold"),
        ({"targets": []}, "targets"),
        ({"targets": [{"url": "http://x", "format": "xml"}]}, "targets.0.format"),
        ({"targets": [{"url": "http://x", "secret": "s"}]}, "targets.0.secret"),
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"colour": "blue"}, "colour"),
        ({"metric": "drift_latency_psi", "route": None}, "route"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    env: Env, receiver: Receiver, change: dict[str, Any], field: str
) -> None:
    r = env.admin.post(URL, json=rule(receiver, **change))
    # 422: the body's shape; 400: a metric no capability offers
    assert r.status_code == (400 if field == "metric" else 422), r.text
    problem = r.json()
    named = [e["field"] for e in problem.get("errors", [])]
    assert field in named or field in problem["detail"], problem
    assert env.admin.get(URL).json() == []


def test_a_bad_silence_and_unknown_rules(env: Env, receiver: Receiver) -> None:
    created = create(env, rule(receiver))
    r = env.admin.post(f"{URL}/{created['id']}/silence", json={"until": "2030-01-01T00:00:00"})
    assert r.status_code == 422 and "until" in [e["field"] for e in r.json()["errors"]]
    assert env.admin.post(f"{URL}/alr_nope/silence", json={"until": None}).status_code == 404
    assert env.admin.post(f"{URL}/alr_nope/test").status_code == 404
    assert env.admin.put(f"{URL}/alr_nope", json=rule(receiver)).status_code == 404
    assert env.admin.post(URL, json=rule(receiver)).status_code == 409  # the name is taken


def test_rules_on_both_backends_and_per_workspace(client: TestClient, receiver: Receiver) -> None:
    """The tables (revision 0008) and a whole firing on SQLite and PostgreSQL; another
    workspace sees none of it."""
    platform = client.app.state.platform  # type: ignore[attr-defined]  # Starlette's app
    engine = platform.tracing.alerts
    asyncio.run_coroutine_threadsafe(engine.stop(), engine.loop).result(30)
    r = client.post(URL, json=rule(receiver, metric="requests", comparator=">=", threshold=2))
    assert r.status_code == 201, r.text
    created = r.json()
    send_spans(client, 3)
    asyncio.run_coroutine_threadsafe(engine.evaluate(), engine.loop).result(60)
    asyncio.run_coroutine_threadsafe(engine.drain(), engine.loop).result(60)
    headers, raw = receiver.requests[0]
    verify(created["secret"], headers, raw)
    assert orjson.loads(raw)["value"] == 3
    [event] = client.get(f"{URL}/history").json()
    assert event["delivery_status"] == "delivered"
    # a new secret signs from now on
    rotated = client.post(f"{URL}/{created['id']}/secret").json()["secret"]
    assert rotated != created["secret"]
    assert client.post(f"{URL}/{created['id']}/test").json()["delivery_status"] == "delivered"
    verify(rotated, *receiver.requests[1])
    # another workspace sees none of it
    other = client.post("/api/workspaces", json={"slug": "other"})
    assert other.status_code == 201, other.text
    with platform.db.transaction() as s:
        assert alerts.list_rules(s, workspace_id=other.json()["id"]) == []
        assert alerts.history(s, workspace_id=other.json()["id"]) == []
        with pytest.raises(NotFound):
            alerts.get_rule(s, workspace_id=other.json()["id"], rule_id=created["id"])


def _point(requests: int, errors: int = 0, p90: float | None = None) -> MetricPoint:
    return MetricPoint(
        bucket_ns=0,
        group={},
        requests=requests,
        errors=errors,
        latency_p50_ms=p90,
        latency_p90_ms=p90,
        latency_p99_ms=p90,
        ttft_p50_ms=None,
        ttft_p90_ms=None,
        ttft_p99_ms=None,
        input_tokens=10 * requests,
        output_tokens=5 * requests,
        cost_usd=0.01 * requests,
        input_chars=0,
        output_chars=0,
    )


def test_window_values_and_comparators() -> None:
    points = [_point(10, 1, 100.0), _point(30, 9, 400.0), _point(0)]
    assert alerts.window_value(points, "requests") == 40
    assert alerts.window_value(points, "error_rate") == pytest.approx(0.25)
    assert alerts.window_value(points, "latency_p90_ms") == 400.0  # the worst minute
    assert alerts.window_value(points, "ttft_p90_ms") is None  # no figure
    assert alerts.window_value(points, "input_tokens") == 400
    assert alerts.window_value(points, "cost_usd") == pytest.approx(0.4)
    assert alerts.window_value([], "requests") == 0  # traffic stopping can alert
    assert alerts.window_value([], "error_rate") is None  # no calls: no rate
    assert alerts.holds(0.3, ">", 0.2) and not alerts.holds(0.2, ">", 0.2)
    assert alerts.holds(0.2, ">=", 0.2) and alerts.holds(0.0, "<", 1) and alerts.holds(1, "<=", 1)
    assert not alerts.holds(None, "<", 1)  # no data never alerts


def test_a_firing_survives_a_restart_without_a_second_notification(
    tmp_path: Path, receiver: Receiver
) -> None:
    def started() -> Iterator[Env]:
        for e in make_env(tmp_path):
            call(e, engine_of(e).stop())
            yield e

    for first in started():
        created = create(first, rule(receiver))
        send_spans(first, 2, errors=2)
        evaluate(first)
    for again in started():  # the same data directory: a restart
        assert again.admin.get(f"{URL}/{created['id']}").json()["state"] == "firing"
        assert evaluate(again) == []
        assert len(receiver.requests) == 1
        evaluate(again, datetime.now(UTC) + timedelta(minutes=10))
        assert [b["event"] for b in receiver.bodies()] == ["firing", "resolved"]
