"""`client.feedback` against the real app on loopback: an app key adds feedback and is
refused reading it; a reviewer adds in bulk, lists, pages, reads one, the metrics per
route, deletes; bad input is named; the async client speaks the same calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shipyard import AsyncClient, Client, ShipyardAPIError
from tests.gateway.conftest import Env, make_env


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    for env in make_env(tmp_path):
        env.provider()
        env.route("support")
        yield env


def _chat(env: Env, key: str) -> str:
    """A gateway call; its trace id."""
    r = httpx.post(
        f"{env.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "support", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-shipyard-trace-id"]


def _stored(env: Env) -> None:
    services = env.app.state.platform.services
    services["tracing"].flush()
    services["feedback"].flush()
    services["feedback"].resolve_pending()


def test_end_user_adds_reviewer_reads_pages_measures_deletes(gw: Env, tmp_path: Path) -> None:
    app_key, _ = gw.key("widget", role="app")
    trace_id = _chat(gw, app_key)
    with Client(gw.url, app_key, cache_dir=tmp_path / "cache") as widget:
        fid = widget.feedback.add(
            trace_id,
            thumbs="down",
            comment="wrong answer",
            correction={"answer": "Hello!"},
            end_user="customer-42",
        )
        assert fid.startswith("fb_")
        for read in (
            lambda: widget.feedback.list(trace_id=trace_id),
            lambda: widget.feedback.get(fid),
            lambda: widget.feedback.metrics(datetime.now(UTC) - timedelta(hours=1)),
        ):
            with pytest.raises(ShipyardAPIError) as refused:
                read()
            assert refused.value.status == 403
        with pytest.raises(ShipyardAPIError) as refused:
            widget.feedback.delete(fid)
        assert refused.value.status == 403

    with Client(gw.url, gw.owner_key, cache_dir=tmp_path / "cache") as c:
        more = c.feedback.add_many(
            [
                {"trace_id": trace_id, "name": "accuracy", "score": 0.5, "label": "partial"},
                {"trace_id": trace_id, "thumbs": "up", "span_id": "0123456789abcdef"},
            ]
        )
        assert len(more) == 2 and len(set(more)) == 2
        _stored(gw)

        page = c.feedback.list(trace_id=trace_id)
        assert {i.id for i in page.items} == {fid, *more} and page.next_cursor is None
        got = c.feedback.get(fid)
        assert (got.thumbs, got.comment, got.correction) == (
            "down",
            "wrong answer",
            {"answer": "Hello!"},
        )
        assert (got.source, got.end_user, got.route) == ("end_user", "customer-42", "support")
        assert got.author.startswith("key:")
        reviewed = c.feedback.get(more[0])
        assert (reviewed.source, reviewed.name, reviewed.score) == ("reviewer", "accuracy", 0.5)
        assert c.feedback.get(more[1]).span_id == "0123456789abcdef"
        assert [i.id for i in c.feedback.list(thumbs="down").items] == [fid]

        seen: list[str] = []
        cursor = None
        while True:
            page = c.feedback.list(trace_id=trace_id, limit=1, cursor=cursor)
            seen += [i.id for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == sorted([fid, *more])

        (point,) = c.feedback.metrics(
            datetime.now(UTC) - timedelta(hours=1), bucket="day", group_by="route"
        )
        assert (point.group, point.count, point.thumbs_up, point.thumbs_down) == (
            "support",
            3,
            1,
            1,
        )
        assert point.score_mean == 0.5 and point.thumbs_up_rate == 0.5
        assert c.feedback.metrics(datetime.now(UTC) - timedelta(hours=1), route="other") == []

        with pytest.raises(ShipyardAPIError) as bad:
            c.feedback.add(trace_id)
        assert bad.value.status == 422 and "at least one of thumbs" in bad.value.detail
        with pytest.raises(ShipyardAPIError) as bad:
            c.feedback.add("not-a-trace", thumbs="up")
        assert bad.value.status == 422 and "trace_id" in bad.value.detail

        assert c.feedback.delete(fid) is None
        with pytest.raises(ShipyardAPIError) as gone:
            c.feedback.get(fid)
        assert gone.value.status == 404


async def test_async_client_speaks_the_same_calls(gw: Env, tmp_path: Path) -> None:
    trace_id = _chat(gw, gw.owner_key)
    async with AsyncClient(gw.url, gw.owner_key, cache_dir=tmp_path / "cache") as c:
        fid = await c.feedback.add(trace_id, score=0.9, name="helpfulness")
        (other,) = await c.feedback.add_many([{"trace_id": trace_id, "thumbs": "up"}])
        _stored(gw)
        page = await c.feedback.list(trace_id=trace_id)
        assert {i.id for i in page.items} == {fid, other}
        assert (await c.feedback.get(fid)).score == 0.9
        points = await c.feedback.metrics(datetime.now(UTC) - timedelta(hours=1), group_by="name")
        assert sorted((p.group, p.count) for p in points) == [("feedback", 1), ("helpfulness", 1)]
        await c.feedback.delete(other)
        with pytest.raises(ShipyardAPIError) as gone:
            await c.feedback.get(other)
        assert gone.value.status == 404


def test_review_queues_from_the_sdk(gw: Env) -> None:
    key, _ = gw.key("widget", role="app")
    traces = [_chat(gw, key) for _ in range(2)]
    _stored(gw)
    with Client(gw.url, gw.owner_key) as c:
        queue = c.feedback.create_queue("triage", [{"kind": "thumbs_down"}])
        assert queue.name == "triage" and queue.progress.total == 0
        assert c.feedback.add_to_queue(queue.id, traces, reason="spot check") == 2
        assert c.feedback.add_to_queue(queue.id, traces) == 0  # once per queue
        first = c.feedback.next_item(queue.id)
        assert first.item is not None and first.item.trace_id == traces[0]
        done = c.feedback.review(queue.id, first.item.id, thumbs="down", comment="off topic")
        assert done.feedback_id and done.item.status == "done"
        second = c.feedback.next_item(queue.id).item
        assert second is not None
        assert c.feedback.skip(queue.id, second.id).item.status == "skipped"
        assert c.feedback.next_item(queue.id).item is None
        [q] = c.feedback.queues()
        assert (q.progress.done, q.progress.skipped, q.progress.percent) == (1, 1, 100)
        assert c.feedback.agreement(queue.id).items == 0  # one reviewer: nothing to compare
        _stored(gw)
        mine = c.feedback.get(done.feedback_id)
        assert (mine.thumbs, mine.comment, mine.source) == ("down", "off topic", "reviewer")
    with Client(gw.url, key) as app_client, pytest.raises(ShipyardAPIError) as denied:
        app_client.feedback.next_item(queue.id)
    assert denied.value.status == 403
