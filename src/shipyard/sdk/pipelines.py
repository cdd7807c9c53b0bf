"""Pipelines from the SDK: built in Python (the same spec YAML holds), pushed as
versions, aliased through the registry, invoked.

    from shipyard.sdk.pipelines import Pipeline

    p = (
        Pipeline(inputs={"question": "string"})
        .retrieve("search", knowledge_base="handbook", query="$inputs.question", k=4)
        .prompt("prompt", "support-answer@production",
                question="$inputs.question", context="$steps.search.text")
        .model("answer", messages="$steps.prompt", retry=2)
    )
    client.pipelines.push("support-answer", p, message="first cut")
    client.registry.set_alias("support-answer", "canary", 1, kind="pipeline")
    done = client.pipelines.invoke("support-answer@canary", question="How do refunds work?")
    print(done.output, done.trace_id, [(s.step, s.ms) for s in done.steps])

Any OpenAI client calls it as a model: `model="pipeline:support-answer@canary"`.
With `AsyncClient` every method returns an awaitable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.pipelines.api.routes import CheckedOut, DiffOut, InvokeOut, PipelinePublic
from shipyard.registry.schemas import VersionPublic
from shipyard.sdk.calls import Call, _as
from shipyard.sdk.evaluation import _seg


class Pipeline:
    """A spec built step by step; `spec()` is the dict a version stores."""

    def __init__(
        self,
        *,
        inputs: dict[str, str | dict[str, Any]] | None = None,
        description: str = "",
        output: str | None = None,
        chat_input: str | None = None,
    ) -> None:
        self.inputs = {
            k: ({"type": v} if isinstance(v, str) else dict(v)) for k, v in (inputs or {}).items()
        }
        self.description = description
        self.output_step = output
        self.chat_input = chat_input
        self.steps: list[dict[str, Any]] = []

    def step(
        self, id: str, type: str, *, retry: int = 0, timeout_s: float | None = None, **config: Any
    ) -> Pipeline:
        entry: dict[str, Any] = {"id": id, "type": type, **config}
        if retry:
            entry["retry"] = {"attempts": retry}
        if timeout_s is not None:
            entry["timeout_s"] = timeout_s
        self.steps.append(entry)
        return self

    def prompt(self, id: str, prompt: str, **variables: Any) -> Pipeline:
        return self.step(id, "prompt", prompt=prompt, variables=variables)

    def retrieve(self, id: str, *, knowledge_base: str, query: str, **options: Any) -> Pipeline:
        return self.step(id, "retrieve", knowledge_base=knowledge_base, query=query, **options)

    def model(
        self, id: str, *, messages: Any, route: str | None = None, retry: int = 0, **params: Any
    ) -> Pipeline:
        extra: dict[str, Any] = {"route": route} if route else {}
        return self.step(id, "model", messages=messages, params=params, retry=retry, **extra)

    def tool(self, id: str, tool: str, **args: Any) -> Pipeline:
        return self.step(id, "tool", tool=tool, args=args)

    def branch(
        self, id: str, *, on: str, cases: dict[str, str], default: str | None = None
    ) -> Pipeline:
        extra: dict[str, Any] = {"default": default} if default else {}
        return self.step(id, "branch", on=on, cases=cases, **extra)

    def map(self, id: str, *, over: str, step: str, concurrency: int = 4) -> Pipeline:
        return self.step(id, "map", over=over, step=step, concurrency=concurrency)

    def output(
        self, id: str, value: Any, *, schema: dict[str, Any] | None = None, parse_json: bool = False
    ) -> Pipeline:
        extra: dict[str, Any] = {"schema": schema} if schema is not None else {}
        return self.step(id, "output", value=value, parse_json=parse_json, **extra)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": self.inputs, "steps": list(self.steps)}
        if self.description:
            out["description"] = self.description
        if self.output_step:
            out["output"] = self.output_step
        if self.chat_input:
            out["chat_input"] = self.chat_input
        return out


def _source(spec: Pipeline | dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(spec, Pipeline):
        return {"spec": spec.spec()}
    if isinstance(spec, dict):
        return {"spec": spec}
    if isinstance(spec, Path):
        return {"yaml": spec.read_text(encoding="utf-8")}
    return {"yaml": spec}


class Pipelines:
    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    def list(self) -> Any:
        """-> list[PipelinePublic]"""
        return self._run(Call("GET", "/api/pipelines", _as(list[PipelinePublic])))

    def validate(self, spec: Pipeline | dict[str, Any] | str | Path) -> Any:
        """-> CheckedOut; raises ShipyardAPIError (400) naming the step at fault.
        A `str` is YAML; a `Path` is read as YAML."""
        return self._run(
            Call("POST", "/api/pipelines/validate", _as(CheckedOut), json=_source(spec))
        )

    def push(
        self, name: str, spec: Pipeline | dict[str, Any] | str | Path, *, message: str = ""
    ) -> Any:
        """-> VersionPublic (the pipeline is created on its first push)."""
        body = {**_source(spec), "message": message}
        return self._run(
            Call("POST", f"/api/pipelines/{_seg(name)}/versions", _as(VersionPublic), json=body)
        )

    def version(self, name: str, number: int) -> Any:
        return self._run(
            Call("GET", f"/api/pipelines/{_seg(name)}/versions/{int(number)}", _as(VersionPublic))
        )

    def diff(self, name: str, a: int, b: int) -> Any:
        return self._run(
            Call("GET", f"/api/pipelines/{_seg(name)}/diff", _as(DiffOut), params={"a": a, "b": b})
        )

    def invoke(self, ref: str, inputs: dict[str, Any] | None = None, **more: Any) -> Any:
        """-> InvokeOut: output, trace_id, each step's input, output and timing."""
        body = {"inputs": {**(inputs or {}), **more}}
        path = f"/api/pipelines/{_seg(ref).replace('%40', '@')}/invoke"
        return self._run(Call("POST", path, _as(InvokeOut), json=body))
