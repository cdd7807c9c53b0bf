"""A narrow task a 135M model learns in minutes on a CPU: a support e-mail in, a fixed
JSON shape out (`category`, `priority`, `product`), scored by exact match. Generated,
so that the demo and the benchmarks need no download; `seed` and `start` make disjoint
training and held-out sets.

    rows = emails(500, seed=1)            # chat examples (OpenAI's fine-tuning format)
    held_out = emails(100, seed=2)
"""

from __future__ import annotations

import json
import random
from typing import Any

SYSTEM = (
    "Read the support e-mail. Reply with JSON only: "
    '{"category": billing|shipping|account|technical, "priority": low|normal|high, '
    '"product": the product named}.'
)
PRODUCTS = ("Atlas Router", "Nimbus Drive", "Pulse Watch", "Echo Speaker", "Orbit Camera",
            "Vega Tablet", "Quill Pen", "Terra Scale")  # fmt: skip
CATEGORIES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for my {p}",
        "the invoice for my {p} is wrong",
        "I need a refund for the {p} I returned",
        "my card was billed for a {p} I never ordered",
    ),
    "shipping": (
        "my {p} has not arrived yet",
        "the {p} came in a damaged box",
        "tracking for my {p} has not moved in a week",
        "I got someone else's parcel instead of my {p}",
    ),
    "account": (
        "I cannot log in to manage my {p}",
        "please change the e-mail on my {p} account",
        "my password reset link for the {p} app expired",
        "how do I delete my {p} account",
    ),
    "technical": (
        "my {p} keeps restarting",
        "the {p} will not pair with my phone",
        "after the update my {p} shows an error",
        "the battery of my {p} drains in an hour",
    ),
}
URGENT = ("This is urgent, please help today.", "I need this fixed right now.",
          "It is blocking my work, please hurry.")  # fmt: skip
CALM = ("No rush, whenever you can.", "Just letting you know.", "When you have a moment.")
OPENERS = ("Hello,", "Hi team,", "Dear support,", "Good morning,", "Hey,")
CLOSERS = ("Thanks, {n}", "Best regards, {n}", "Cheers, {n}", "{n}")
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon")


# the answer's shape, for scoring live traffic that has no reference (an online
# evaluation rule's json_schema scorer)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"enum": sorted(CATEGORIES)},
        "priority": {"enum": ["low", "normal", "high"]},
        "product": {"enum": list(PRODUCTS)},
    },
    "required": ["category", "priority", "product"],
    "additionalProperties": False,
}


def email(rng: random.Random) -> tuple[str, dict[str, str]]:
    category = rng.choice(sorted(CATEGORIES))
    product = rng.choice(PRODUCTS)
    priority = rng.choice(("low", "normal", "high"))
    tone = {"high": rng.choice(URGENT), "low": rng.choice(CALM), "normal": ""}[priority]
    body = rng.choice(CATEGORIES[category]).format(p=product)
    text = " ".join(
        part for part in (rng.choice(OPENERS), body[0].upper() + body[1:] + ".", tone,
                          rng.choice(CLOSERS).format(n=rng.choice(NAMES))) if part
    )  # fmt: skip
    return text, {"category": category, "priority": priority, "product": product}


def emails(n: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """`n` chat examples: the system instruction, the e-mail, the JSON answer."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, answer = email(rng)
        out.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": json.dumps(answer)},
                ]
            }
        )
    return out


def exact(output: str, expected: str) -> bool:
    """Every field equal (the JSON's spacing and key order do not count)."""
    try:
        got = json.loads(output.strip())
    except ValueError:
        return False
    return isinstance(got, dict) and got == json.loads(expected)
