"""What the built-in scorers share: a base for scorers that judge one case at a time
(`PerItem`: the batch runs in one worker thread), the configuration check a run makes
before it starts (`check_config`), and the case's values as text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from shipyard.errors import InvalidInput
from shipyard.inputs import Strict, invalid
from shipyard.plugins import Case, Score, ScoreContext, Scorer

C = TypeVar("C", bound=BaseModel)


class NoConfig(Strict):
    """A scorer that takes no configuration: any key is refused."""


def as_text(value: Any) -> str:
    """A value as text: a string as is, anything else as compact JSON (never raises)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def expected_text(case: Case) -> str | None:
    """The case's expected value as text; None when it has none."""
    return None if case.expected is None else as_text(case.expected)


def output_text(case: Case) -> str:
    return as_text(case.output)


def references(case: Case) -> list[str] | None:
    """Reference texts: the expected string, or a list of strings (None: neither)."""
    if isinstance(case.expected, str):
        return [case.expected]
    expected = case.expected
    if isinstance(expected, list) and expected and all(isinstance(r, str) for r in expected):
        return list(expected)
    return None


def check_config(scorer: Scorer, raw: Any, where: str = "") -> dict[str, Any]:
    """A run's configuration for `scorer`, checked against its `config_model` and
    returned normalized; raises InvalidInput naming the field (under `where`, by default
    `scorers.<name>`)."""
    where = where or f"scorers.{scorer.name}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: must be an object", param=where)
    model = scorer.config_model or NoConfig
    try:
        checked: BaseModel = model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc, where) from None
    return checked.model_dump(by_alias=True)  # what `config_model` reads back


class PerItem(Generic[C]):
    """A scorer that judges each case on its own, synchronously (`one`); `score` runs
    the whole batch in one worker thread, so CPU-bound metrics never block the loop."""

    name: str
    config_model: type[C]
    higher_is_better: bool = True

    async def score(self, cases: Sequence[Case], ctx: ScoreContext) -> list[Score]:
        config = self.config_model.model_validate(ctx.config)
        batch = list(cases)
        return await asyncio.to_thread(lambda: [self.one(case, config) for case in batch])

    def one(self, case: Case, config: C) -> Score:
        raise NotImplementedError


NO_EXPECTED = Score(None, "no expected value")
