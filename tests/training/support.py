"""A tiny narrow task for fine-tuning tests (support messages -> a JSON category), and
waiting on jobs."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai

CATEGORIES = ("billing", "shipping", "account")
SYSTEM = "Classify the message. Reply with JSON."


def example(i: int) -> dict[str, Any]:
    category = CATEGORIES[i % len(CATEGORIES)]
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"I have a {category} question, case {i}."},
            {"role": "assistant", "content": json.dumps({"category": category})},
        ]
    }


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in rows) + b"\n"


def upload(client: openai.OpenAI, n: int, name: str = "train.jsonl", start: int = 0) -> str:
    data = jsonl([example(i) for i in range(start, start + n)])
    return client.files.create(file=(name, io.BytesIO(data)), purpose="fine-tune").id


ENDED = ("succeeded", "failed", "cancelled")


def wait(client: openai.OpenAI, job_id: str, until: tuple[str, ...] = ENDED) -> Any:
    timeout = 600
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in until:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.5)


def wait_for(check: Any, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
