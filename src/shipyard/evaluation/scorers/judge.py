"""LLM-as-judge: a rubric (versioned by its label), optional few-shot examples, any
chat route as the judge (default: the built-in local model), through the gateway."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from shipyard.errors import ShipyardError
from shipyard.evaluation.scorers.base import as_text
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score, ScoreContext

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Example(Strict):
    input: Any = None
    output: Any = None
    score: float = Field(allow_inf_nan=False)
    reason: str = Field(default="", max_length=2000)


class JudgeConfig(Strict):
    route: str = Field(default="smollm2", min_length=1, max_length=200)
    rubric: str = Field(min_length=1, max_length=8000)
    rubric_version: str | None = Field(default=None, max_length=100)
    scale_min: float = Field(default=1, ge=-1e6, le=1e6)
    scale_max: float = Field(default=5, ge=-1e6, le=1e6)
    examples: list[Example] = Field(default_factory=list, max_length=20)
    temperature: float = Field(default=0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=1, le=4000)
    concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("scale_max")
    @classmethod
    def _scale(cls, scale_max: float, info: ValidationInfo) -> float:
        scale_min = info.data.get("scale_min")
        if scale_min is not None and scale_max <= scale_min:
            raise ValueError("must be above scale_min")
        return scale_max

    @field_validator("examples")
    @classmethod
    def _within(cls, examples: list[Example], info: ValidationInfo) -> list[Example]:
        lo, hi = info.data.get("scale_min"), info.data.get("scale_max")
        for i, ex in enumerate(examples):
            if lo is not None and hi is not None and not lo <= ex.score <= hi:
                raise ValueError(f"{i}.score: must be within the scale ({lo:g} to {hi:g})")
        return examples


def _show(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            return only
    return as_text(value)


def _turn(inputs: Any, output: Any, expected: Any = None) -> str:
    parts = [f"Input:\n{_show(inputs)}"]
    if expected is not None:
        parts.append(f"Expected:\n{_show(expected)}")
    parts.append(f"Output:\n{_show(output)}")
    return "\n\n".join(parts)


def messages(config: JudgeConfig, case: Case) -> list[dict[str, Any]]:
    lo, hi = f"{config.scale_min:g}", f"{config.scale_max:g}"
    system = (
        f"{config.rubric}\n\nScore the output from {lo} to {hi}. Answer with JSON only: "
        '{"score": <number>, "reason": "<one sentence>"}'
    )
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for ex in config.examples:
        answer = json.dumps({"score": ex.score, "reason": ex.reason}, ensure_ascii=False)
        out.append({"role": "user", "content": _turn(ex.input, ex.output)})
        out.append({"role": "assistant", "content": answer})
    out.append({"role": "user", "content": _turn(case.inputs, case.output, case.expected)})
    return out


def parse(answer: str, lo: float, hi: float) -> tuple[float, str] | None:
    """(score, reason) from a judge's answer: a JSON object with "score" anywhere in
    it, else the first number within the scale; None when neither."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", answer)):
        try:
            found, _ = decoder.raw_decode(answer, start)
        except (ValueError, RecursionError):
            continue
        score = found.get("score") if isinstance(found, dict) else None
        if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score):
            return float(score), as_text(found.get("reason", ""))
    for m in NUMBER.finditer(answer):
        value = float(m.group())
        if lo <= value <= hi:
            return value, answer.strip()
    return None


class LlmJudge:
    """The judge's score normalised to 0..1; the reason reads "4/5: <the judge's>". A
    score outside the scale is not guessed at (None, with the judge's answer)."""

    name = "llm_judge"
    config_model = JudgeConfig
    higher_is_better = True

    async def score(self, cases: Sequence[Case], ctx: ScoreContext) -> list[Score]:
        config = JudgeConfig.model_validate(ctx.config)
        gate = asyncio.Semaphore(config.concurrency)

        async def one(case: Case) -> Score:
            async with gate:
                return await self._judge(case, config, ctx)

        return list(await asyncio.gather(*(one(case) for case in cases)))

    async def _judge(self, case: Case, config: JudgeConfig, ctx: ScoreContext) -> Score:
        from shipyard.gateway.core.call import ChatRequest

        params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        request = ChatRequest(model=config.route, messages=messages(config, case), params=params)
        try:
            result = await ctx.chat(request)
        except ShipyardError as exc:
            return Score(None, f"judge call failed: {exc.detail}"[:1000])
        answer = str(getattr(result, "content", "") or "")
        lo, hi = config.scale_min, config.scale_max
        found = parse(answer, lo, hi)
        if found is None:
            return Score(None, f"unparseable judge answer: {answer[:300]!r}")
        value, reason = found
        if not lo <= value <= hi:
            why = f"the judge's score {value:g} is outside {lo:g}..{hi:g}: {reason}"
            return Score(None, why[:1000])
        label = f"{value:g}/{hi:g}"
        if config.rubric_version:
            label += f" [rubric {config.rubric_version}]"
        return Score((value - lo) / (hi - lo), f"{label}: {reason}"[:1000])
