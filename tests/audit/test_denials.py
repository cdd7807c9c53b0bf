"""An unauthenticated flood is counted and audited per source and minute, never written
one row per request."""

from __future__ import annotations

import re

import orjson
from sqlalchemy import func, select
from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.audit.denials import DenialLog
from shipyard.audit.models import AuditEvent
from shipyard.http.metrics import Metrics
from shipyard.settings import Settings
from shipyard.store import Database

BODY = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}


def _count(row: dict[str, object]) -> int:
    match = re.match(r"count=(\d+);", str(row["detail"]))
    assert match, row
    return int(match.group(1))


def _rows(db: Database) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_500_unauthenticated_requests_make_a_handful_of_rows(
    sqlite_settings: Settings,
) -> None:
    app = create_app(sqlite_settings)
    with TestClient(app, base_url="http://localhost", client=("203.0.113.9", 1)) as flood:
        platform = app.state.platform
        before = _rows(platform.db)
        for n in range(500):
            headers = {} if n % 2 else {"Authorization": "Bearer sy-000000000000-not-a-key"}
            r = flood.post("/v1/chat/completions", json=BODY, headers=headers)
            assert r.status_code == 401
        for _ in range(100):
            assert flood.get("/api/me").status_code == 401
        assert _rows(platform.db) == before  # nothing written per request
        key = orjson.loads(sqlite_settings.credentials_path.read_bytes())["api_key"]
        metrics = flood.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    denied = 'shipyard_denied_requests_total{face="gateway",reason="%s"} 250.0'
    assert denied % "missing_key" in metrics and denied % "invalid_key" in metrics
    assert 'shipyard_denied_requests_total{face="api",reason="unauthenticated"} 100.0' in metrics

    # stopping flushed what was pending; a restart reads it back
    with TestClient(create_app(sqlite_settings), base_url="http://localhost") as admin:
        admin.headers["Authorization"] = f"Bearer {key}"
        gateway = admin.get("/api/audit", params={"action": "gateway.denied"}).json()
        api = admin.get("/api/audit", params={"action": "api.denied"}).json()
    assert 2 <= len(gateway) <= 4  # two reasons, one source, one or two minutes
    assert sum(_count(row) for row in gateway) == 500
    assert {row["client_addr"] for row in gateway} == {"203.0.113.9"}
    assert {row["outcome"] for row in gateway} == {"denied"}
    assert 1 <= len(api) <= 2 and sum(_count(row) for row in api) == 100


def test_buckets_are_written_once_their_minute_is_over_and_are_bounded(
    sqlite_settings: Settings,
) -> None:
    app = create_app(sqlite_settings)
    app.state.platform.start()
    db = app.state.platform.db
    now = [6000.0]
    log = DenialLog(db, Metrics().denials, max_buckets=50, clock=lambda: now[0])
    before = _rows(db)
    for n in range(1000):  # 1,000 sources in one minute
        log.note(face="gateway", reason="missing_key", status=401, source=f"2001:db8::{n:x}")
    assert log.flush() == 0  # the minute is not over: nothing written yet
    now[0] += 60
    assert log.flush() == 51  # 50 sources and one bucket for the rest
    assert _rows(db) == before + 51
    log.note(face="gateway", reason="missing_key", status=401, source="2001:db8::1")
    assert log.pending() == 1 and log.flush(everything=True) == 1
    with db.transaction() as s:
        details = list(s.scalars(select(AuditEvent.detail).where(AuditEvent.client_addr == "*")))
    assert details == ["count=950; missing_key: "]
    app.state.platform.stop()
