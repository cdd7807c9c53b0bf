"""The feedback overview under /feedback: feedback over time as charts (mean score,
thumbs-up rate and count per bucket, one line per route, model, prompt version, name or
source) and the newest pieces with links to their traces. The same store functions as
`GET /api/feedback/metrics` and `GET /api/feedback`."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from shipyard.feedback import store
from shipyard.feedback.api.feedback import public
from shipyard.feedback.store import FeedbackPoint
from shipyard.http.deps import Authorized, Ctx
from shipyard.tracing.charts import Chart, line_chart
from shipyard.ui.router import render

router = APIRouter(include_in_schema=False, prefix="/feedback")
WINDOWS = {"1h": (3600, 60), "24h": (86_400, 3600), "7d": (7 * 86_400, 86_400 // 4)}
GROUPS = ("route", "model", "prompt", "name", "source")
TOP = 6  # lines per chart


def charts(points: list[FeedbackPoint], buckets: list[int]) -> list[Chart]:
    """Mean score, thumbs-up rate and count per bucket, for the busiest groups."""
    cells: dict[str, dict[int, FeedbackPoint]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    for p in points:
        name = p.group or "(none)"
        cells[name][p.bucket_s] = p
        totals[name] += p.count
    top = sorted(totals, key=lambda g: (-totals[g], g))[:TOP]
    labels = [datetime.fromtimestamp(b, UTC).strftime("%m-%d %H:%M") for b in buckets]

    def series(value: str, empty: float | None) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {}
        for g in top:
            row: list[float | None] = []
            for b in buckets:
                cell = cells[g].get(b)
                row.append(empty if cell is None else cell.value(value))
            out[g] = row
        return out

    rate = {
        g: [None if v is None else 100 * v for v in vs]
        for g, vs in series("feedback_thumbs_up_rate", None).items()
    }
    return [
        line_chart("Mean score", "score", "", labels, series("feedback_score_mean", None), ".2f"),
        line_chart("Thumbs up", "thumbs", "%", labels, rate, ".0f"),
        line_chart("Feedback", "count", "", labels, series("feedback_count", 0.0)),
    ]


@router.get("", name="ui.feedback_overview")
def overview(
    ctx: Ctx = Authorized("feedback:read"),
    window: Literal["1h", "24h", "7d"] = "24h",
    by: Literal["route", "model", "prompt", "name", "source"] = "route",
    source: Literal["", "end_user", "reviewer", "api", "evaluation"] = Query(""),
) -> Response:
    """`source` "" (the form's "any"): every source."""
    span, size = WINDOWS[window]
    now = int(time.time())
    until = now - now % size + size
    since = until - span
    with ctx.platform.db.transaction() as s:
        points = store.metrics(
            s,
            workspace_id=ctx.workspace_id,
            since_s=since,
            until_s=until,
            bucket_s=size,
            group_by=by,
            source=source or None,
        )
        recent = [
            public(r)
            for r in store.search(
                s, workspace_id=ctx.workspace_id, source=source or None, since_s=since, limit=50
            )
        ]
    buckets = list(range(since, until, size))
    return render(
        ctx, "feedback_overview.html", "feedback", charts=charts(points, buckets),
        recent=recent, window=window, by=by, source=source, windows=list(WINDOWS),
        groups=GROUPS,
    )  # fmt: skip
