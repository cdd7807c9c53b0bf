"""The engine on its own: references read once per scope, independent steps run
concurrently, only the branch taken runs, a map keeps order and bounds concurrency,
retries back off then fail naming the step, timeouts, literal `$$`, input checks. The
steps' services here are plain Python (the server tests run them for real)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.pipelines.engine import Run, StepFailed
from shipyard.pipelines.spec import compile_spec
from shipyard.plugins import Plugins


class Counting:
    """A `shout` tool that counts its calls and can be told to fail or be slow."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_first = 0
        self.delay = 0.0
        self.active = 0
        self.peak = 0

    async def shout(self, text: str) -> dict[str, Any]:
        self.calls.append(text)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_first > 0:
                self.fail_first -= 1
                raise RuntimeError("flaky")
            return {"text": text.upper(), "kind": "LOUD" if text.startswith("!") else "calm"}
        finally:
            self.active -= 1

    def tool(self, name: str) -> Any:
        assert name == "shout"
        return self.shout


def _compile(spec: dict[str, Any]) -> Any:
    plugins = Plugins()
    return compile_spec(
        spec, label="t@v1", load_step=lambda t: plugins.load("shipyard.pipeline_steps", t)()
    )


def _run(spec: dict[str, Any], services: Counting, **inputs: Any) -> Run:
    return Run(_compile(spec), inputs, services, trace_id="0" * 31 + "1", root_span="1" * 16)  # type: ignore[arg-type]


def tool(id: str, text: Any, **extra: Any) -> dict[str, Any]:
    return {"id": id, "type": "tool", "tool": "shout", "args": {"text": text}, **extra}


async def test_a_step_read_twice_runs_once_and_independent_steps_run_together() -> None:
    services = Counting()
    services.delay = 0.2
    spec = {
        "inputs": {"a": {"type": "string"}, "b": {"type": "string"}},
        "steps": [
            tool("x", "$inputs.a"),
            tool("y", "$inputs.b"),
            {"id": "out", "type": "output",
             "value": {"one": "$steps.x.text", "again": "$steps.x.text", "two": "$steps.y.text"}},
        ],
    }  # fmt: skip
    run = _run(spec, services, a="left", b="right")
    started = time.perf_counter()
    out = await run.result()
    elapsed = time.perf_counter() - started
    assert out == {"one": "LEFT", "again": "LEFT", "two": "RIGHT"}
    assert sorted(services.calls) == ["left", "right"]  # x once, though read twice
    assert services.peak == 2 and elapsed < 0.39  # x and y together, not one after another
    assert [r.step for r in run.records if r.type == "tool"] == ["x", "y"]


async def test_only_the_branch_taken_runs_and_a_map_keeps_order() -> None:
    services = Counting()
    services.delay = 0.05
    spec = {
        "inputs": {"mood": {"type": "string"}, "words": {"type": "array"}},
        "steps": [
            tool("mood", "$inputs.mood"),
            {"id": "pick", "type": "branch", "on": "$steps.mood.kind",
             "cases": {"loud": "each", "calm": "hush"}},
            {"id": "each", "type": "map", "over": "$inputs.words", "step": "one",
             "concurrency": 2},
            tool("one", "$item"),
            tool("hush", "shh"),
        ],
        "output": "pick",
    }  # fmt: skip
    run = _run(spec, services, mood="!yes", words=["a", "b", "c", "d", "e"])
    out = await run.result()
    assert [o["text"] for o in out] == ["A", "B", "C", "D", "E"]
    assert "shh" not in services.calls and services.peak <= 2
    parents = {r.step: r.span_id for r in run.records}
    assert all(r.parent_id == parents["each"] for r in run.records if r.step == "one")
    assert parents["each"] in {r.span_id for r in run.records if r.step == "each"}

    calm = _run(spec, Counting(), mood="quiet", words=["a"])
    assert (await calm.result())["text"] == "SHH"


async def test_retries_back_off_then_fail_naming_the_step() -> None:
    services = Counting()
    services.fail_first = 1
    spec = {"steps": [tool("flaky", "x", retry={"attempts": 2, "backoff_s": 0})]}
    run = _run(spec, services)
    assert (await run.result())["text"] == "X"
    assert run.records[0].attempts == 2

    services.fail_first = 5
    run = _run(spec, services)
    with pytest.raises(StepFailed) as failed:
        await run.result()
    assert failed.value.step == "flaky" and failed.value.status == 502
    assert "step 'flaky' (tool) failed after 3 attempts: RuntimeError" in failed.value.detail
    assert run.records[0].status == "error"

    # through a map: the inner step is the one named
    nested = {
        "inputs": {"xs": {"type": "array"}},
        "steps": [
            {"id": "m", "type": "map", "over": "$inputs.xs", "step": "t"},
            tool("t", "$item"),
        ],
        "output": "m",
    }
    services.fail_first = 1
    with pytest.raises(StepFailed) as failed:
        await _run(nested, services, xs=["a"]).result()
    assert failed.value.step == "t"


async def test_a_step_past_its_timeout_fails_with_504() -> None:
    services = Counting()
    services.delay = 1.0
    run = _run({"steps": [tool("slow", "x", timeout_s=0.05)]}, services)
    with pytest.raises(StepFailed) as failed:
        await run.result()
    assert failed.value.status == 504 and "timed out after 0.05 s" in failed.value.detail


async def test_literals_and_inputs() -> None:
    spec = {
        "inputs": {"n": {"type": "integer", "required": False, "default": 3},
                   "s": {"type": "string", "max_length": 4}},
        "steps": [{"id": "o", "type": "output", "value": {"cost": "$$5", "n": "$inputs.n",
                                                          "s": "$inputs.s"}}],
    }  # fmt: skip
    assert await _run(spec, Counting(), s="abc").result() == {"cost": "$5", "n": 3, "s": "abc"}
    for bad, field in (({"s": "toolong"}, "inputs.s"), ({"s": "x", "n": True}, "inputs.n"),
                       ({}, "inputs.s"), ({"s": "x", "zz": 1}, "inputs.zz")):  # fmt: skip
        with pytest.raises(InvalidInput) as refused:
            _run(spec, Counting(), **bad)
        assert refused.value.detail.startswith(field), refused.value.detail


def test_a_branch_cycle_and_a_map_of_a_map_are_refused() -> None:
    cyclic = {
        "steps": [
            {"id": "b", "type": "branch", "on": "x", "cases": {"x": "c"}},
            {"id": "c", "type": "output", "value": "$steps.b"},
        ]
    }
    with pytest.raises(InvalidInput, match=r"a cycle: b -> c -> b|a cycle: c -> b -> c"):
        _compile(cyclic)
    nested = {
        "inputs": {"xs": {"type": "array"}},
        "steps": [
            {"id": "m", "type": "map", "over": "$inputs.xs", "step": "n"},
            {"id": "n", "type": "map", "over": "$item", "step": "t"},
            tool("t", "$item"),
        ],
        "output": "m",
    }
    with pytest.raises(InvalidInput, match="a map's step may not be a map"):
        _compile(nested)
    with pytest.raises(InvalidInput, match=r"\$steps.nope names no step"):
        _compile({"steps": [{"id": "o", "type": "output", "value": ["$steps.nope"]}]})
    with pytest.raises(InvalidInput, match="is not a reference"):
        _compile({"steps": [{"id": "o", "type": "output", "value": "$steps."}]})


async def test_a_timed_out_case_runs_again_on_retry_and_a_failure_stops_its_siblings() -> None:
    services = Counting()
    services.delay = 0.3
    spec = {
        "steps": [
            {"id": "b", "type": "branch", "on": "x", "cases": {"x": "slow"},
             "timeout_s": 0.1, "retry": {"attempts": 1, "backoff_s": 0}},
            tool("slow", "zz"),
        ],
        "output": "b",
    }  # fmt: skip
    run = _run(spec, services)
    with pytest.raises(StepFailed) as failed:  # a StepFailed, never a bare CancelledError
        await run.result()
    assert failed.value.status == 504 and len(services.calls) == 2  # the case ran again

    services = Counting()
    services.delay = 0.5
    siblings = {
        "inputs": {"mood": {"type": "string"}},
        "steps": [
            {"id": "bad", "type": "branch", "on": "$inputs.mood", "cases": {"x": "slow"}},
            tool("slow", "zz"),
            tool("other", "yy"),
            {"id": "out", "type": "output", "value": ["$steps.bad", "$steps.other"]},
        ],
    }  # fmt: skip
    run = _run(siblings, services, mood="nothing matches")
    started = time.perf_counter()
    with pytest.raises(StepFailed) as failed:
        await run.result()
    assert failed.value.step == "bad" and time.perf_counter() - started < 0.4
    await asyncio.sleep(0.05)
    other = next(r for r in run.records if r.step == "other")
    assert other.status == "error" and other.error == "cancelled"  # stopped, not left running


async def test_a_fan_out_past_the_step_cap_is_refused() -> None:
    spec = {
        "inputs": {"xs": {"type": "array"}},
        "steps": [
            {"id": "m", "type": "map", "over": "$inputs.xs", "step": "br", "concurrency": 16},
            {"id": "br", "type": "branch", "on": "go", "cases": {"go": "m2"}},
            {"id": "m2", "type": "map", "over": "$item", "step": "leaf", "max_items": 1000},
            {"id": "leaf", "type": "output", "value": "$item"},
        ],
        "output": "m",
    }
    with pytest.raises(StepFailed) as failed:
        await _run(spec, Counting(), xs=[list(range(100))] * 60).result()
    assert failed.value.status == 400 and "ran 5000 steps" in failed.value.detail
