"""Feedback from the SDK: thumbs, scores, labels, comments and corrections on a trace (or
one span of it), read back, and their metrics over time.

    fid = client.feedback.add(trace_id, thumbs="down", comment="wrong", end_user="u-42")
    client.feedback.add_many([{"trace_id": t, "score": 0.8, "name": "accuracy"}, ...])
    client.feedback.list(trace_id=trace_id).items
    client.feedback.metrics(since, bucket="day", group_by="route")

An `app` key (what an end user's thumbs come through) may add feedback but not read it:
`list`, `get` and `metrics` raise ShipyardAPIError 403 with one. Adding is acknowledged
once the server has the feedback in its write-ahead log; it is readable a moment later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from shipyard.feedback.schemas import (
    Accepted,
    AgreementPublic,
    FeedbackPage,
    FeedbackPublic,
    MetricPointPublic,
    NextPublic,
    QueuePublic,
    ReviewedPublic,
)
from shipyard.sdk.calls import Call, _as

Thumbs = Literal["up", "down"]


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in values.items()
        if v is not None
    }


def _ids(raw: Any) -> list[str]:
    return Accepted.model_validate(raw).ids


def _first_id(raw: Any) -> str:
    return _ids(raw)[0]


def _gone(_: Any) -> None:
    return None


class Feedback:
    """The /api/feedback routes, described once (`Call`) for the sync and the async
    client; with `AsyncClient` every method returns an awaitable."""

    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def add(
        self,
        trace_id: str,
        *,
        name: str | None = None,
        thumbs: Thumbs | None = None,
        score: float | None = None,
        label: str | None = None,
        comment: str | None = None,
        correction: Any = None,
        span_id: str | None = None,
        end_user: str | None = None,
        source: Literal["end_user", "reviewer", "api"] | None = None,
    ) -> Any:
        """One piece (at least one of thumbs, score, label, comment, correction) -> its
        id. `name`: what is judged (default "feedback"); `source` defaults to end_user
        for app keys, reviewer otherwise."""
        body = _params(
            {
                "trace_id": trace_id,
                "span_id": span_id,
                "name": name,
                "thumbs": thumbs,
                "score": score,
                "label": label,
                "comment": comment,
                "correction": correction,
                "end_user": end_user,
                "source": source,
            }
        )
        return self._run(Call("POST", "/api/feedback", _first_id, json=body))

    def add_many(self, items: Iterable[Mapping[str, Any]]) -> Any:
        """Up to 1,000 pieces (each a mapping of `add`'s fields), all or none -> their
        ids, in order."""
        body = [_params(i) for i in items]
        return self._run(Call("POST", "/api/feedback/batch", _ids, json=body))

    def list(self, **filters: Any) -> Any:
        """Newest first -> FeedbackPage (`items`, `next_cursor`: pass it as `cursor` for
        the next page). Filters: trace_id, name, source, route, thumbs, since, until,
        cursor, limit."""
        params = _params(filters)
        return self._run(Call("GET", "/api/feedback", _as(FeedbackPage), params=params))

    def get(self, feedback_id: str) -> Any:
        """-> FeedbackPublic."""
        path = f"/api/feedback/{quote(feedback_id, safe='')}"
        return self._run(Call("GET", path, _as(FeedbackPublic)))

    def metrics(
        self,
        since: datetime,
        *,
        until: datetime | None = None,
        bucket: Literal["minute", "hour", "day"] = "hour",
        group_by: Literal["route", "model", "prompt", "name", "source"] | None = None,
        **filters: Any,
    ) -> Any:
        """Per time bucket (and group) -> list[MetricPointPublic]: count, mean score,
        thumbs up and down, up rate. Filters: name, route, model, prompt, source."""
        params = _params(
            {"since": since, "until": until, "bucket": bucket, "group_by": group_by, **filters}
        )
        call = Call("GET", "/api/feedback/metrics", _as(list[MetricPointPublic]), params=params)
        return self._run(call)

    def delete(self, feedback_id: str) -> Any:
        """Remove one piece (admins)."""
        path = f"/api/feedback/{quote(feedback_id, safe='')}"
        return self._run(Call("DELETE", path, _gone))

    # Review queues ---------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        rules: Iterable[Mapping[str, Any]] = (),
        *,
        description: str = "",
        reviews_wanted: int = 1,
    ) -> Any:
        """A review queue; `rules` route traces into it (`{"kind": "thumbs_down"}`,
        `{"kind": "sample", "percent": 5, "route": "support"}`, ...) -> QueuePublic."""
        body = {
            "name": name,
            "description": description,
            "rules": [dict(r) for r in rules],
            "reviews_wanted": reviews_wanted,
        }
        return self._run(Call("POST", "/api/feedback/queues", _as(QueuePublic), json=body))

    def queues(self) -> Any:
        """-> list[QueuePublic] (with progress)"""
        return self._run(Call("GET", "/api/feedback/queues", _as(list[QueuePublic])))

    def add_to_queue(self, queue_id: str, trace_ids: Iterable[str], reason: str = "") -> Any:
        """Traces put in a queue by hand -> how many were new there."""
        body: dict[str, Any] = {"trace_ids": list(trace_ids)}
        if reason:
            body["reason"] = reason
        path = f"{_queue(queue_id)}/items"
        return self._run(Call("POST", path, lambda d: int(d["added"]), json=body))

    def next_item(self, queue_id: str) -> Any:
        """Your next pending item, assigned to you -> NextPublic (`item` None: done)."""
        return self._run(Call("POST", f"{_queue(queue_id)}/next", _as(NextPublic), json={}))

    def review(self, queue_id: str, item_id: str, **answer: Any) -> Any:
        """Answer an item (`thumbs="down"`, `score=`, `label=`, `comment=`,
        `correction=`), stored as feedback -> ReviewedPublic."""
        path = f"{_queue(queue_id)}/items/{quote(item_id, safe='')}/review"
        return self._run(Call("POST", path, _as(ReviewedPublic), json=_params(answer)))

    def skip(self, queue_id: str, item_id: str) -> Any:
        path = f"{_queue(queue_id)}/items/{quote(item_id, safe='')}/skip"
        return self._run(Call("POST", path, _as(ReviewedPublic), json={}))

    def agreement(self, queue_id: str) -> Any:
        """Between reviewers on items two reviewed -> AgreementPublic."""
        return self._run(Call("GET", f"{_queue(queue_id)}/agreement", _as(AgreementPublic)))


def _queue(queue_id: str) -> str:
    return f"/api/feedback/queues/{quote(queue_id, safe='')}"
