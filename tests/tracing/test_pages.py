"""The trace page's tree and the dashboard's charts, on their own (the pages are tested
end to end in tests/ui/test_tracing_pages.py)."""

from __future__ import annotations

from shipyard.tracing.charts import HEIGHT, PAD, line_chart
from shipyard.tracing.pages import span_tree
from shipyard.tracing.spans import Span


def span(span_id: str, parent: str = "", start: int = 0, end: int = 10) -> Span:
    return Span("ws", "t" * 32, span_id, parent_id=parent, start_ns=start, end_ns=end)


def test_tree_order_depth_and_bars() -> None:
    spans = [span("a", "", 0, 100), span("b", "a", 10, 60), span("c", "a", 20, 30)]
    spans.append(span("d", "b", 15, 40))
    rows = span_tree(spans, 0, 100)
    assert [(r.span.span_id, r.depth) for r in rows] == [("a", 0), ("b", 1), ("d", 2), ("c", 1)]
    a, b = rows[0], rows[1]
    assert (a.offset_pct, a.width_pct) == (0, 100)
    assert (b.offset_pct, b.width_pct) == (10, 50)


def test_hostile_parentage_neither_loops_nor_loses_spans() -> None:
    spans = [
        span("x", "y"),  # x and y are each other's parent
        span("y", "x"),
        span("self", "self"),
        span("orphan", "gone"),  # its parent never arrived (or is on another page)
        span("late", "", 500, 400),  # ends before it starts, far outside the bounds
    ]
    rows = span_tree(spans, 0, 10)
    assert sorted(r.span.span_id for r in rows) == sorted(s.span_id for s in spans)
    depth = {r.span.span_id: r.depth for r in rows}
    assert depth["orphan"] == 1 and depth["self"] == 1 and depth["late"] == 0
    for r in rows:
        assert r.offset_pct >= 0 and r.width_pct > 0
        assert r.offset_pct + r.width_pct <= 100 + 1e-9


def test_a_deep_chain_is_walked_without_recursion() -> None:
    spans = [span("s0")] + [span(f"s{i}", f"s{i - 1}", i, i + 1) for i in range(1, 5000)]
    rows = span_tree(spans, 0, 5000)
    assert rows[-1].depth == 4999


def test_line_chart_scales_into_the_view_box() -> None:
    chart = line_chart("Requests", "requests", "", ["a", "b", "c"], {"r1": [0, 5, None]})
    (series,) = chart.series
    assert len(series.points) == 2  # no point where there is no value
    (x0, y0, _), (x1, y1, tip) = series.points
    assert y0 == HEIGHT - PAD and y1 == PAD and x1 > x0
    assert tip == "r1 · b: 5 " and chart.top == "5"
    empty = line_chart("Cost", "cost", "USD", [], {})
    assert empty.series == [] and empty.top == "1"
