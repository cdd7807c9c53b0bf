"""LoRA fine-tuning through Shipyard against its floor: a plain `transformers` + `peft`
loop written the obvious way, in the same run, on the same data, threads and
hyperparameters. Prints figures; asserts nothing.

The task: generated support e-mails -> a JSON of category, priority and product
(`shipyard.training.tasks`), SmolLM2-135M-Instruct, LoRA r=16 on attention and MLP,
lr 2e-4, batch 8. Shipyard: a real server (`shipyard up`), the file uploaded to
`/v1/files`, a job on `/v1/fine_tuning/jobs`; its seconds per step are the worker's own
(from the job's metrics events), and the wall time from creation to a servable model is
printed too (worker start, base load, training, GGUF conversion). The floor: the same
steps in this process, each example tokenized with the chat template and padded, the
loss on every token (the obvious loop), `torch.set_num_threads(--threads)`.
Target: Shipyard's seconds per step <= 1.1x the floor's.

    .venv/bin/python bench/training.py --steps 12 --threads 2
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import shipyard_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def plain_loop(rows: list[dict[str, Any]], base: Path, steps: int, batch: int,
               threads: int) -> list[tuple[float, int]]:  # fmt: skip
    """The obvious loop: (seconds, tokens) per step, the first (warm-up) left out."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shipyard.training.worker import TARGETS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
        target_modules=TARGETS,
    ))  # fmt: skip
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    out = []
    for step in range(steps + 1):
        began = time.perf_counter()
        part = texts[(step * batch) % len(texts) :][:batch]
        enc = tok(part, return_tensors="pt", padding=True, truncation=True, max_length=512)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step:
            out.append((time.perf_counter() - began, int(enc["attention_mask"].sum())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    from shipyard.training.tasks import emails

    rows = emails(args.batch * (args.steps + 1), seed=1)
    work = Path(tempfile.mkdtemp(prefix="shipyard-train-bench-"))
    os.environ["SHIPYARD_TRAINING_THREADS"] = str(args.threads)
    os.environ["SHIPYARD_TRAINING_BASES"] = str(work / "bases")
    try:
        print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg()[:2])}")
        with shipyard_up(work) as c:
            data = b"\n".join(orjson.dumps(r) for r in rows)
            up = c.post("/v1/files", files={"file": ("train.jsonl", io.BytesIO(data))},
                        data={"purpose": "fine-tune"})  # fmt: skip
            up.raise_for_status()
            hyper = {"n_epochs": 1, "batch_size": args.batch, "lora_rank": 16,
                     "lora_alpha": 32, "checkpoint_every": 10_000}  # fmt: skip
            began = time.perf_counter()
            r = c.post("/v1/fine_tuning/jobs", json={"model": "smollm2", "training_file":
                       up.json()["id"], "hyperparameters": hyper})  # fmt: skip
            r.raise_for_status()
            job_id = r.json()["id"]
            while (job := c.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] in (
                "queued", "running"):  # fmt: skip
                time.sleep(1)
            wall = time.perf_counter() - began
            if job["status"] != "succeeded":
                raise SystemExit(f"the job {job['status']}: {job['error']}")
            events = c.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()
            steps = [e["data"] for e in events["data"] if e["type"] == "metrics"]
            metrics = sorted(steps, key=lambda d: d["step"])[1:]  # less the warm-up step
        ours = [d["seconds"] for d in metrics]
        ours_tps = [d["tokens_per_s"] for d in metrics]
        print(f"Shipyard: {len(rows)} examples, {job['total_steps']} steps of {args.batch}, "
              f"{args.threads} threads; job to servable model {wall:.1f} s")  # fmt: skip
        print(f"  s/step median {statistics.median(ours):.2f}, tokens/s median "
              f"{statistics.median(ours_tps):.0f}")  # fmt: skip
        base = next((work / "bases").glob("*-hf"))  # the folder the job made
        floor = plain_loop(rows, base, args.steps, args.batch, args.threads)
        secs = [s for s, _ in floor]
        tps = [t / s for s, t in floor]
        med_s, med_tps = statistics.median(secs), statistics.median(tps)
        print(f"floor, plain transformers + peft loop: s/step median {med_s:.2f}, "
              f"tokens/s median {med_tps:.0f}")  # fmt: skip
        ratio = statistics.median(ours) / statistics.median(secs)
        print(f"Shipyard s/step / floor: {ratio:.2f}x (target <= 1.1x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
