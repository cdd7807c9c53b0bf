"""What the comparison page draws: per scorer, a bar chart of each run's mean with its
95% interval as a whisker (inline SVG geometry computed here, drawn and escaped by the
template, as tracing's line charts are), and each item's verdict against the baseline
(win, loss or tie on one scorer, in the scorer's direction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.tracing.charts import COLORS

WIDTH, HEIGHT, PAD, LABELS = 360, 200, 28, 36


@dataclass
class Bar:
    label: str  # the run's name
    color: str
    x: float
    y: float
    width: float
    height: float
    value: str  # the mean, formatted
    whisker: tuple[float, float] | None  # the interval's top and bottom (y)
    tip: str


@dataclass
class BarChart:
    scorer: str
    top: str
    bars: list[Bar] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD
    labels: int = LABELS

    @property
    def base(self) -> int:
        return self.height - self.labels


def bar_charts(runs: list[dict[str, Any]], scorers: list[str]) -> list[BarChart]:
    """One chart per scorer the runs share; `runs` are the API's public runs."""
    charts = []
    for label in scorers:
        summaries = [((r["aggregates"].get("scores") or {}).get(label) or {}) for r in runs]
        highs = [s.get(k) for s in summaries for k in ("mean", "ci_high")]
        top = max((v for v in highs if v is not None), default=0.0) or 1.0
        chart = BarChart(scorer=label, top=format(top, ".3g"))
        span_y = chart.base - PAD
        slot = (WIDTH - 2 * PAD) / max(len(runs), 1)
        for i, (run, s) in enumerate(zip(runs, summaries, strict=True)):
            mean = s.get("mean")
            height = 0.0 if mean is None else span_y * max(mean, 0.0) / top
            x = PAD + i * slot + slot * 0.15
            whisker = None
            if s.get("ci_low") is not None and s.get("ci_high") is not None:
                whisker = (
                    chart.base - span_y * max(s["ci_high"], 0.0) / top,
                    chart.base - span_y * max(s["ci_low"], 0.0) / top,
                )
            interval = f" [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" if whisker is not None else ""
            value = "–" if mean is None else format(mean, ".3f")
            chart.bars.append(
                Bar(
                    label=run["name"] or run["id"],
                    color=COLORS[i % len(COLORS)],
                    x=x,
                    y=chart.base - height,
                    width=slot * 0.7,
                    height=height,
                    value=value,
                    whisker=whisker,
                    tip=f"{run['name'] or run['id']} · {label}: {value}{interval}",
                )
            )
        charts.append(chart)
    return charts


def verdicts(items: list[dict[str, Any]], scorer: str, higher_is_better: bool) -> list[list[str]]:
    """Per item, per run after the baseline: 'win', 'loss', 'tie' or '' (not scored)."""
    out = []
    for item in items:
        cells = item["runs"]
        base = _value(cells[0], scorer)
        marks = []
        for cell in cells[1:]:
            other = _value(cell, scorer)
            if base is None or other is None:
                marks.append("")
            elif other == base:
                marks.append("tie")
            else:
                marks.append("win" if (other > base) == higher_is_better else "loss")
        out.append(marks)
    return out


def _value(cell: dict[str, Any] | None, scorer: str) -> float | None:
    if cell is None or cell.get("error"):
        return None
    value = ((cell.get("scores") or {}).get(scorer) or {}).get("value")
    return None if value is None else float(value)
