"""The evaluation benchmark's items: seeded synthetic question/answer pairs, each with an
output that overlaps its reference in part (copies, case and spacing variants, words
swapped, dropped or reordered, unrelated answers). The same seed gives the same items in
every process and run. Used by bench/evaluation.py."""

from __future__ import annotations

import random
from typing import Any

SUBJECTS = (
    "the invoice",
    "the shipment",
    "the river",
    "the library",
    "the new policy",
    "the museum",
    "the storm",
    "the contract",
    "the bridge",
    "the patient",
    "the orchestra",
    "the server",
    "the harvest",
    "the committee",
    "the satellite",
    "the recipe",
)
VERBS = (
    "was approved",
    "arrived",
    "was repaired",
    "opened",
    "was delayed",
    "was signed",
    "flooded",
    "was moved",
    "recovered",
    "was cancelled",
    "was inspected",
    "expanded",
)
WHEN = (
    "on Monday",
    "last week",
    "in early spring",
    "after the audit",
    "before noon",
    "during the night",
    "in 2019",
    "at the end of the quarter",
    "two days later",
    "after the vote",
)
WHY = (
    "because the budget was finally agreed",
    "after several months of careful planning",
    "since the old one had failed the safety checks",
    "when the weather cleared over the valley",
    "so that the team could meet the deadline",
    "because local residents had asked for it",
    "after a long discussion with the regional office",
    "once the missing documents were found",
)
FILLER = (
    "quickly",
    "officially",
    "quietly",
    "partly",
    "again",
    "finally",
    "mostly",
    "briefly",
    "largely",
    "eventually",
)
UNRELATED = (
    "Penguins live in the southern hemisphere and eat mostly fish.",
    "The recipe needs two cups of flour and a pinch of salt.",
    "I am not sure; the documents do not say.",
    "Paris is the capital of France.",
    "Please contact support for more details.",
    "The answer depends on several factors that are not given here.",
)


def _answer(rng: random.Random) -> tuple[str, str]:
    subject, verb = rng.choice(SUBJECTS), rng.choice(VERBS)
    when, why = rng.choice(WHEN), rng.choice(WHY)
    question = f"What happened to {subject} {when}?"
    answer = f"{subject.capitalize()} {verb} {when} {why}."
    return question, answer


def _variant(rng: random.Random, ref: str) -> str:
    """An output for `ref`: exact in about a fifth of the items, partly overlapping in
    most, unrelated in some."""
    roll = rng.random()
    words = ref.rstrip(".").split()
    if roll < 0.20:
        return ref
    if roll < 0.25:
        return f"  {ref.lower()} \n"  # differs in case and spacing only
    if roll < 0.70:  # some words swapped for fillers, some dropped
        out = []
        for w in words:
            r = rng.random()
            if r < 0.15:
                out.append(rng.choice(FILLER))
            elif r > 0.9:
                continue
            else:
                out.append(w)
        return " ".join(out) + "."
    if roll < 0.85:  # the first part only, or the clauses in another order
        cut = rng.randint(3, max(3, len(words) - 2))
        if rng.random() < 0.5:
            return " ".join(words[:cut]) + "."
        return (" ".join(words[cut:]) + " " + " ".join(words[:cut])).capitalize() + "."
    if roll < 0.92:  # a different answer to a similar question
        return _answer(rng)[1]
    return rng.choice(UNRELATED)


def items(n: int, seed: int = 14) -> list[dict[str, Any]]:
    """`n` items `{inputs: {input}, expected, output}`, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        question, ref = _answer(rng)
        out.append({"inputs": {"input": question}, "expected": ref, "output": _variant(rng, ref)})
    return out
