"""The gateway benchmark's figures: one row per server, ratios to the floor, the targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from harness import Plan, Server

# --- figures ----------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    p50_ms: float
    p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    peak_rps: float
    peak_connections: int
    peak_p99_ms: float
    p99_32_ms: float
    max_rps_10ms: float
    max_rps_connections: int
    cpu_ms_peak: float
    cpu_ms_one: float
    idle_rss: float
    peak_rss: float
    warm_rss: float
    end_rss: float
    warm_served: int
    served: int
    start_s: float
    errors: int
    notes: list[str]


def figures(s: Server, direct: Server | None) -> Figures:
    p50 = min(r.p50_ms for r in s.latency)
    p99 = min(r.p99_ms for r in s.latency)
    steps = [r for sweep in s.sweeps for r in sweep]
    peak = max(steps, key=lambda r: r.rps)
    round_peaks = [max(sweep, key=lambda r: r.rps) for sweep in s.sweeps]
    at_32 = [r.p99_ms for r in steps if r.connections == 32]
    ok = [r for r in steps if r.p99_ms <= 10.0]
    best = max(ok, key=lambda r: r.rps) if ok else None
    d50 = min(r.p50_ms for r in direct.latency) if direct else p50
    d99 = min(r.p99_ms for r in direct.latency) if direct else p99
    return Figures(
        name=s.name,
        p50_ms=p50,
        p99_ms=p99,
        added_p50_ms=p50 - d50,
        added_p99_ms=p99 - d99,
        peak_rps=peak.rps,
        peak_connections=peak.connections,
        peak_p99_ms=peak.p99_ms,
        p99_32_ms=min(at_32) if at_32 else math.nan,
        max_rps_10ms=best.rps if best else math.nan,
        max_rps_connections=best.connections if best else 0,
        cpu_ms_peak=min(r.cpu_ms for r in round_peaks),
        cpu_ms_one=min(r.cpu_ms for r in s.latency),
        idle_rss=s.idle_rss,
        peak_rss=s.rss.peak if s.rss else math.nan,
        warm_rss=s.warm_rss,
        end_rss=s.end_rss,
        warm_served=s.warm_served,
        served=s.served,
        start_s=s.start_s,
        errors=s.errors,
        notes=s.notes,
    )


def ratio(value: float, floor: float) -> str:
    if not (math.isfinite(value) and math.isfinite(floor)) or floor <= 0:
        return "n/a"
    return f"{value / floor:.2f}x"


Row = tuple[str, Callable[[Figures], float], str, bool]  # label, figure, format, with ratio

ROWS: list[Row] = [
    ("latency p50, 1 client (ms)", lambda f: f.p50_ms, "{:.3f}", True),
    ("latency p99, 1 client (ms)", lambda f: f.p99_ms, "{:.3f}", True),
    ("added p50 over direct (ms)", lambda f: f.added_p50_ms, "{:.3f}", True),
    ("added p99 over direct (ms)", lambda f: f.added_p99_ms, "{:.3f}", True),
    ("peak rps, one core", lambda f: f.peak_rps, "{:,.0f}", True),
    ("p99 at 32 connections (ms)", lambda f: f.p99_32_ms, "{:.2f}", True),
    ("max rps with p99 <= 10 ms", lambda f: f.max_rps_10ms, "{:,.0f}", True),
    ("CPU ms per request, at peak", lambda f: f.cpu_ms_peak, "{:.3f}", True),
    ("CPU ms per request, 1 client", lambda f: f.cpu_ms_one, "{:.3f}", True),
    ("RSS idle (MB)", lambda f: f.idle_rss, "{:.0f}", True),
    ("RSS peak under load (MB)", lambda f: f.peak_rss, "{:.0f}", True),
    ("RSS at end (MB)", lambda f: f.end_rss, "{:.0f}", True),
    ("RSS growth, warm-up -> end", lambda f: 100 * (f.end_rss / f.warm_rss - 1), "{:+.1f}%", False),
    ("requests served", lambda f: f.served, "{:,}", False),
    ("start to ready (s)", lambda f: f.start_s, "{:.2f}", True),
    ("errors (non-2xx, socket)", lambda f: f.errors, "{}", False),
]


def cell(fmt: str, value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return fmt.format(value)


def report(rows: list[Figures], plan: Plan) -> Figures | None:
    floor = next((f for f in rows if f.name == "floor"), None)
    width = 22
    print()
    print(
        f"Best of {plan.rounds} rounds; latency runs {plan.latency_s:g} s, sweep "
        f"c={','.join(map(str, plan.sweep))} at {plan.step_s:g} s each. Ratios are to the floor."
    )
    print(f"{'':31}" + "".join(f"{f.name:>{width}}" for f in rows))
    for label, get, fmt, with_ratio in ROWS:
        line = f"{label:31}"
        for f in rows:
            value = get(f)
            text = cell(fmt, value)
            if f.name == "direct" and label.startswith("added"):
                text = "–"
            elif with_ratio and floor is not None and f.name not in ("direct", "floor"):
                text = f"{text} ({ratio(value, get(floor))})"
            line += f"{text:>{width}}"
        print(line)
    print("  direct: the upstream shares core 1 with wrk, so its rps and CPU are not one core's")
    for f in rows:
        if f.peak_connections:
            print(
                f"  {f.name}: peak at c={f.peak_connections} (p99 {f.peak_p99_ms:.1f} ms)", end=""
            )
            if f.max_rps_connections:
                print(f"; max rps with p99 <= 10 ms at c={f.max_rps_connections}", end="")
            print()
        if f.warm_served != f.served and f.name != "direct":
            print(
                f"  {f.name}: RSS growth from {f.warm_rss:.0f} MB after {f.warm_served:,} "
                f"requests to {f.end_rss:.0f} MB after {f.served:,}"
            )
        for note in f.notes:
            print(f"  {f.name}: {note}")
    return floor


def targets(ship: Figures, floor: Figures) -> None:
    checks = [
        (
            "added p50 <= floor + 0.15 ms",
            ship.added_p50_ms,
            floor.added_p50_ms + 0.15,
            "{:.3f} ms",
        ),
        ("added p99, 1 client <= 2x floor", ship.added_p99_ms, 2 * floor.added_p99_ms, "{:.3f} ms"),
        ("p99 at 32 connections <= 2x floor", ship.p99_32_ms, 2 * floor.p99_32_ms, "{:.2f} ms"),
        ("CPU per request <= 1.6x floor", ship.cpu_ms_peak, 1.6 * floor.cpu_ms_peak, "{:.3f} ms"),
        ("peak RSS under load <= 150 MB", ship.peak_rss, 150.0, "{:.0f} MB"),
    ]
    print()
    print("Shipyard's targets (against the floor measured in this run):")
    for label, value, limit, fmt in checks:
        ok = value <= limit
        print(
            f"  {label:36} {fmt.format(value):>12} vs {fmt.format(limit):>12}  "
            f"{'pass' if ok else 'FAIL'}"
        )
    limit = 0.65 * floor.peak_rps
    ok = ship.peak_rps >= limit
    print(
        f"  {'throughput >= 0.65x floor':36} {ship.peak_rps:>8,.0f} rps vs {limit:>8,.0f} rps  "
        f"{'pass' if ok else 'FAIL'}"
    )
