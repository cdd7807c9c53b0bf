"""Review queue rules: what routes a trace into a queue. A queue's rules are a list; a
trace enters when any one matches (the first that does names the reason).

    {"kind": "sample", "percent": 5, "route": "support"}   5% of the traces (of a route)
    {"kind": "route", "route": "support"}                   every trace of a route
    {"kind": "thumbs_down", "route": null}                  a thumbs down on the trace
    {"kind": "score_below", "threshold": 0.5, "name": null} a score under the threshold
    {"kind": "alert", "rule": "support-drift", "limit": 50} when that alert rule fires:
                                                            the traces of its route in
                                                            its window, newest first

Sampling is deterministic on the trace id (the first 64 bits of its SHA-256 against the
percentage), so every replica, and every evaluation of the same trace, agrees; a 5%
queue's traces are a subset of a 10% queue's."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from shipyard.inputs import Strict

RouteName = Annotated[str, Field(min_length=1, max_length=128)]
TRACE_KINDS = ("sample", "route")
FEEDBACK_KINDS = ("thumbs_down", "score_below")


class SampleRule(Strict):
    kind: Literal["sample"]
    percent: float = Field(gt=0, le=100, allow_inf_nan=False)
    route: RouteName | None = None


class RouteRule(Strict):
    kind: Literal["route"]
    route: RouteName


class ThumbsDownRule(Strict):
    kind: Literal["thumbs_down"]
    route: RouteName | None = None


class ScoreBelowRule(Strict):
    kind: Literal["score_below"]
    threshold: float = Field(allow_inf_nan=False, ge=-1e9, le=1e9)
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # feedback name
    route: RouteName | None = None


class AlertFiredRule(Strict):
    kind: Literal["alert"]
    rule: Annotated[str, Field(min_length=1, max_length=128)]  # the alert rule's name
    limit: int = Field(default=50, ge=1, le=500)  # traces taken per firing


Rule = Annotated[
    SampleRule | RouteRule | ThumbsDownRule | ScoreBelowRule | AlertFiredRule,
    Field(discriminator="kind"),
]
RULES: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])


def sampled(trace_id: str, percent: float) -> bool:
    """Whether a trace falls in the first `percent`% of the hash space."""
    digest = hashlib.sha256(trace_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < percent / 100 * 2**64


def _route_ok(rule: dict[str, Any], route: str) -> bool:
    wanted = rule.get("route")
    return wanted is None or wanted == route


def trace_reason(rules: Sequence[dict[str, Any]], *, trace_id: str, route: str) -> str | None:
    """Why a new trace enters a queue with these rules, or None."""
    for rule in rules:
        kind = rule.get("kind")
        if kind == "route" and rule.get("route") == route:
            return f"route {route}"
        if kind == "sample" and _route_ok(rule, route) and sampled(trace_id, rule["percent"]):
            return f"sampled {rule['percent']:g}%"
    return None


def feedback_reason(
    rules: Sequence[dict[str, Any]],
    *,
    route: str,
    name: str,
    thumbs: int | None,
    score: float | None,
) -> str | None:
    """Why a trace enters a queue after this piece of feedback on it, or None."""
    for rule in rules:
        kind = rule.get("kind")
        if not _route_ok(rule, route):
            continue
        if kind == "thumbs_down" and thumbs is not None and thumbs < 0:
            return "thumbs down"
        if (
            kind == "score_below"
            and score is not None
            and score < rule["threshold"]
            and rule.get("name") in (None, name)
        ):
            return f"score {score:g} < {rule['threshold']:g}"
    return None


def kinds(rules: Sequence[dict[str, Any]]) -> set[str]:
    return {str(r.get("kind")) for r in rules}
