"""Text scorers: exact match, contains, regex (RE2: linear time whatever the pattern)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2
from pydantic import Field, field_validator

from shipyard.evaluation.scorers.base import NO_EXPECTED, PerItem, expected_text, output_text
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score

MAX_PATTERN = 2000


def utf8(text: str) -> str:
    """RE2 takes UTF-8: a lone surrogate becomes U+FFFD rather than an error."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text


class ExactMatchConfig(Strict):
    case_sensitive: bool = True
    strip: bool = True


class ExactMatch(PerItem[ExactMatchConfig]):
    """1.0 when the output equals the expected text (after stripping, by default)."""

    name = "exact_match"
    config_model = ExactMatchConfig

    def one(self, case: Case, config: ExactMatchConfig) -> Score:
        expected = expected_text(case)
        if expected is None:
            return NO_EXPECTED
        got = output_text(case)
        if config.strip:
            got, expected = got.strip(), expected.strip()
        if not config.case_sensitive:
            got, expected = got.casefold(), expected.casefold()
        return Score(1.0 if got == expected else 0.0)


class ContainsConfig(Strict):
    value: str | None = Field(default=None, max_length=10_000)
    case_sensitive: bool = True


class Contains(PerItem[ContainsConfig]):
    """1.0 when the output contains `value` (by default, the expected text)."""

    name = "contains"
    config_model = ContainsConfig

    def one(self, case: Case, config: ContainsConfig) -> Score:
        needle = config.value if config.value is not None else expected_text(case)
        if needle is None:
            return NO_EXPECTED
        got = output_text(case)
        if not config.case_sensitive:
            got, needle = got.casefold(), needle.casefold()
        return Score(1.0 if needle in got else 0.0)


@lru_cache(maxsize=256)
def compile_re2(pattern: str) -> Any:
    options = re2.Options()
    options.max_mem = 8 << 20
    options.log_errors = False
    return re2.compile(pattern, options)


class RegexConfig(Strict):
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN)
    full_match: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compile_re2(pattern)
        except UnicodeEncodeError:
            raise ValueError("is not valid Unicode (a lone surrogate)") from None
        except re2.error as exc:
            why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(f"is not a valid RE2 pattern ({why})") from None
        return pattern


class Regex(PerItem[RegexConfig]):
    """1.0 when `pattern` is found in the output (or matches all of it: `full_match`)."""

    name = "regex"
    config_model = RegexConfig

    def one(self, case: Case, config: RegexConfig) -> Score:
        compiled = compile_re2(config.pattern)
        text = utf8(output_text(case))
        found = compiled.fullmatch(text) if config.full_match else compiled.search(text)
        return Score(1.0 if found is not None else 0.0)
