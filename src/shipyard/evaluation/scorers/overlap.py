"""Overlap with reference texts: BLEU and chrF (`sacrebleu`), ROUGE-1/2/L
(`rouge-score`, F-measure). Values are scaled to 0..1; the expected value is one
reference string or a list of them. The libraries are imported on first use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field

from shipyard.evaluation.scorers.base import PerItem, output_text, references
from shipyard.inputs import Strict
from shipyard.plugins import Case, Score

NO_REFERENCE = Score(None, "no reference text (expected: a string or a list of strings)")


class BleuConfig(Strict):
    lowercase: bool = False
    tokenize: str = Field(default="13a", pattern="^(13a|none|intl|char|zh)$")


class Bleu(PerItem[BleuConfig]):
    """sacrebleu's sentence BLEU (exponential smoothing, effective order) / 100."""

    name = "bleu"
    config_model = BleuConfig

    def one(self, case: Case, config: BleuConfig) -> Score:
        import sacrebleu

        refs = references(case)
        if refs is None:
            return NO_REFERENCE
        result = sacrebleu.sentence_bleu(
            output_text(case), refs, lowercase=config.lowercase, tokenize=config.tokenize
        )
        return Score(min(1.0, result.score / 100))


class ChrfConfig(Strict):
    word_order: int = Field(default=0, ge=0, le=2)  # 2: chrF++


class Chrf(PerItem[ChrfConfig]):
    """sacrebleu's sentence chrF / 100."""

    name = "chrf"
    config_model = ChrfConfig

    def one(self, case: Case, config: ChrfConfig) -> Score:
        import sacrebleu

        refs = references(case)
        if refs is None:
            return NO_REFERENCE
        result = sacrebleu.sentence_chrf(output_text(case), refs, word_order=config.word_order)
        return Score(min(1.0, result.score / 100))


class RougeConfig(Strict):
    use_stemmer: bool = False


@lru_cache(maxsize=8)
def _rouge(kind: str, use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=use_stemmer)


class _Rouge(PerItem[RougeConfig]):
    config_model = RougeConfig
    kind = ""

    def one(self, case: Case, config: RougeConfig) -> Score:
        refs = references(case)
        if refs is None:
            return NO_REFERENCE
        found = _rouge(self.kind, config.use_stemmer).score_multi(refs, output_text(case))
        return Score(float(found[self.kind].fmeasure))


class Rouge1(_Rouge):
    name = kind = "rouge1"


class Rouge2(_Rouge):
    name = kind = "rouge2"


class RougeL(_Rouge):
    name = kind = "rougeL"
