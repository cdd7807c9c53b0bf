"""Line charts drawn on the server as inline SVG geometry (no chart library in the
browser): a chart is series of values over the same time buckets, scaled into a fixed
view box. The template draws the polylines, points and labels; every label is text that
the template escapes."""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT, PAD = 640, 180, 28
COLORS = ("#2d5bd7", "#c2332b", "#16794c", "#b26b00", "#7c3aed", "#0e7490", "#be185d", "#4b5563")


@dataclass
class Series:
    label: str
    color: str
    points: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, tooltip

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


@dataclass
class Chart:
    title: str
    slug: str
    unit: str
    top: str  # the value at the top of the scale, formatted
    start: str  # the first and last buckets' times
    end: str
    series: list[Series]

    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def line_chart(
    title: str,
    slug: str,
    unit: str,
    labels: list[str],
    series: dict[str, list[float | None]],
    fmt: str = ".0f",
) -> Chart:
    """`series` maps a legend label to one value per bucket (None: no data there)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max(values, default=0.0) or 1.0
    n = max(len(labels), 1)
    span_x = WIDTH - 2 * PAD
    span_y = HEIGHT - 2 * PAD

    def x(i: int) -> float:
        return PAD + (span_x * i / (n - 1) if n > 1 else span_x / 2)

    drawn = []
    for i, (label, vs) in enumerate(series.items()):
        s = Series(label=label, color=COLORS[i % len(COLORS)])
        for j, v in enumerate(vs):
            if v is not None:
                y = HEIGHT - PAD - span_y * v / top
                s.points.append((x(j), y, f"{label} · {labels[j]}: {format(v, fmt)} {unit}"))
        drawn.append(s)
    return Chart(
        title=title,
        slug=slug,
        unit=unit,
        top=format(top, fmt),
        start=labels[0] if labels else "",
        end=labels[-1] if labels else "",
        series=drawn,
    )
