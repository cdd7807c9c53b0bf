"""The training worker: one fine-tuning job in its own process, started by the server
(`python -m shipyard.training.worker SPEC.json`) at a lower priority with its threads
capped. It trains a LoRA adapter with `peft` on `transformers`, checkpoints every
`checkpoint_every` steps (the adapter and the optimizer's state, written to a temporary
folder and renamed), resumes from a checkpoint it is given, and reports on stdout, one
JSON object a line:

    {"event": "message", "message": "..."}
    {"event": "metrics", "step": 3, "total_steps": 10, "train_loss": 1.2, "tokens_per_s": 410.0}
    {"event": "checkpoint", "step": 5, "path": ".../checkpoint-5", "metrics": {...}}
    {"event": "done", "adapter": ".../adapter", "gguf": ".../adapter.gguf", ...}

Supervised examples learn their assistant messages only (the prompt's tokens are
masked out of the loss). Preference pairs (`method: dpo`) train with `trl`'s
DPOTrainer.
The server reads these lines and stores them; this process touches no database.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: the server would drop the line
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps(_finite({"event": event, **data}), allow_nan=False) + "\n")
    sys.stdout.flush()


@dataclass
class Spec:
    base_gguf: str
    base_dir: str
    train: str
    validation: str | None
    out: str
    method: str
    seed: int
    threads: int
    resume: str | None
    n_epochs: int
    batch_size: int
    learning_rate: float
    lora_rank: int
    lora_alpha: int
    max_length: int
    checkpoint_every: int
    beta: float = 0.1

    @classmethod
    def load(cls, path: str) -> Spec:
        raw = json.loads(Path(path).read_text())
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def encode(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and its labels: the assistant messages' tokens (their
    closing marker included), -100 everywhere else."""

    def tokens(part: list[dict[str, str]], generation: bool = False) -> list[int]:
        text = tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=generation)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        upto = tokens(messages[: i + 1])
        start = len(tokens(messages[:i], True)) if message["role"] == "assistant" else len(upto)
        new = upto[len(ids) :]
        learn_from = max(start - len(ids), 0)
        ids.extend(new)
        labels.extend([-100] * min(learn_from, len(new)) + new[learn_from:])
    return ids[:max_length], labels[:max_length]


def batches(n: int, size: int, epochs: int, seed: int) -> list[list[int]]:
    """Every step's example indices: each epoch a fresh shuffle (the same for a seed)."""
    out: list[list[int]] = []
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(seed + epoch).shuffle(order)
        out.extend(order[i : i + size] for i in range(0, n, size))
    return out


def collate(rows: list[tuple[list[int], list[int]]], pad: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (i, lab) in enumerate(rows):
        ids[r, : len(i)] = torch.tensor(i)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(i)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def read_jsonl(path: str) -> list[Any]:
    from shipyard.training.data import method_of, read

    data = Path(path).read_bytes()
    return read(data, method_of(data), name=Path(path).name)


def evaluate(model: Any, rows: list[tuple[list[int], list[int]]], pad: int, size: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(rows), size):
            part = rows[i : i + size]
            loss = model(**collate(part, pad)).loss
            total += float(loss) * len(part)
            count += len(part)
    model.train()
    return total / max(count, 1)


def supervised(spec: Spec) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shipyard.training.base import hf_folder

    torch.manual_seed(spec.seed)
    emit("message", message="loading the base model")
    base = hf_folder(Path(spec.base_gguf), Path(spec.base_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model: Any = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=0.05,
            target_modules=TARGETS, task_type="CAUSAL_LM",
        ),
    )  # fmt: skip
    encoded = [encode(tokenizer, ex, spec.max_length) for ex in read_jsonl(spec.train)]
    # an example cut before its answer has nothing to learn (its loss would be NaN)
    train = [row for row in encoded if any(label != -100 for label in row[1])]
    if not train:
        raise RuntimeError(f"no example keeps an answer within max_length {spec.max_length}")
    if len(train) < len(encoded):
        emit("message", message=f"{len(encoded) - len(train)} examples are cut before their "
                                f"answer by max_length {spec.max_length}: left out")  # fmt: skip
    valid = [
        row
        for row in (
            [encode(tokenizer, ex, spec.max_length) for ex in read_jsonl(spec.validation)]
            if spec.validation
            else []
        )
        if any(label != -100 for label in row[1])
    ]
    plan = batches(len(train), spec.batch_size, spec.n_epochs, spec.seed)
    total = len(plan)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / total)
    )
    step, tokens = 0, 0
    if spec.resume:
        state = torch.load(Path(spec.resume) / "state.pt", weights_only=False)
        set_peft_model_state_dict(
            model, load_file(str(Path(spec.resume) / "adapter_model.safetensors"))
        )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, tokens = int(state["step"]), int(state["tokens"])
        emit("message", message=f"resumed from the checkpoint at step {step}")
    emit("message", message=f"training {total} steps on {len(train)} examples")
    model.train()
    out = Path(spec.out)
    last_loss = math.nan
    while step < total:
        began = time.perf_counter()
        batch = collate([train[i] for i in plan[step]], pad)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        n_tokens = int(batch["attention_mask"].sum())
        tokens += n_tokens
        last_loss = float(loss.detach())
        took = time.perf_counter() - began
        emit(
            "metrics", step=step, total_steps=total, train_loss=round(last_loss, 5),
            tokens_per_s=round(n_tokens / took, 1), seconds=round(took, 3), trained_tokens=tokens,
        )  # fmt: skip
        if step % spec.checkpoint_every == 0 and step < total:
            metrics: dict[str, Any] = {"step": step, "train_loss": round(last_loss, 5)}
            if valid:
                metrics["valid_loss"] = round(evaluate(model, valid, pad, spec.batch_size), 5)
            path = out / f"checkpoint-{step}"
            partial = out / f"checkpoint-{step}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left by a worker that died
            model.save_pretrained(str(partial))
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": step, "tokens": tokens},
                partial / "state.pt",
            )  # fmt: skip
            shutil.rmtree(path, ignore_errors=True)  # a step done again after a resume
            os.replace(partial, path)
            emit("checkpoint", step=step, path=str(path), metrics=metrics)
    metrics = {"step": step, "train_loss": round(last_loss, 5)}
    if valid:
        metrics["valid_loss"] = round(evaluate(model, valid, pad, spec.batch_size), 5)
    adapter = out / "adapter"
    model.save_pretrained(str(adapter))
    return {"adapter": str(adapter), "trained_tokens": tokens, "metrics": metrics}


def preference(spec: Spec) -> dict[str, Any]:
    """DPO with `trl`'s DPOTrainer, the LoRA adapter on the base (the base itself, with
    the adapter disabled, is the reference model); its logs and checkpoints reported as
    a supervised job's are. A checkpoint is the Trainer's own folder (adapter, optimizer,
    scheduler, trainer state), which it resumes from."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]  # exported lazily

    from shipyard.training.base import hf_folder

    torch.manual_seed(spec.seed)
    emit("message", message="loading the base model")
    base = hf_folder(Path(spec.base_gguf), Path(spec.base_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)

    def rows(path: str) -> Any:
        return Dataset.from_list([
            {"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]}
            for p in read_jsonl(path)
        ])  # fmt: skip

    train = rows(spec.train)
    valid = rows(spec.validation) if spec.validation else None
    total = math.ceil(len(train) / spec.batch_size) * spec.n_epochs
    out = Path(spec.out)
    args = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size, num_train_epochs=spec.n_epochs,
        learning_rate=spec.learning_rate, beta=spec.beta, max_length=spec.max_length,
        logging_steps=1, save_strategy="steps", save_steps=spec.checkpoint_every,
        eval_strategy="steps" if valid is not None else "no", eval_steps=spec.checkpoint_every,
        report_to=[], use_cpu=True, bf16=False, seed=spec.seed, disable_tqdm=True,
        dataloader_num_workers=0, lr_scheduler_type="linear", warmup_steps=max(1, total // 20),
    )  # fmt: skip
    last: dict[str, Any] = {"began": time.perf_counter(), "loss": math.nan}

    class Report(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                now = time.perf_counter()
                last["loss"] = float(logs["loss"])
                emit(
                    "metrics", step=state.global_step, total_steps=state.max_steps,
                    train_loss=round(last["loss"], 5),
                    reward_accuracy=logs.get("rewards/accuracies"),
                    reward_margin=logs.get("rewards/margins"),
                    seconds=round(now - last["began"], 3),
                )  # fmt: skip
                last["began"] = now
            if "eval_loss" in logs:
                last["valid"] = float(logs["eval_loss"])

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            metrics = {"step": state.global_step, "train_loss": round(last["loss"], 5)}
            if "valid" in last:
                metrics["valid_loss"] = round(last["valid"], 5)
            path = out / f"checkpoint-{state.global_step}"
            emit("checkpoint", step=state.global_step, path=str(path), metrics=metrics)

    trainer: Any = DPOTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=valid,
        processing_class=tokenizer, callbacks=[Report()],
        peft_config=LoraConfig(
            r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=0.05,
            target_modules=TARGETS, task_type="CAUSAL_LM",
        ),
    )  # fmt: skip
    if spec.resume:
        emit("message", message=f"resumed from the checkpoint at step {_step_of(spec.resume)}")
    emit("message", message=f"training {total} steps on {len(train)} preference pairs")
    trainer.train(resume_from_checkpoint=spec.resume)
    metrics = {"step": trainer.state.global_step, "train_loss": round(last["loss"], 5)}
    if valid is not None:
        metrics["valid_loss"] = round(float(trainer.evaluate()["eval_loss"]), 5)
    adapter = out / "adapter"
    trainer.model.save_pretrained(str(adapter))
    return {"adapter": str(adapter), "trained_tokens": 0, "metrics": metrics}


def _step_of(checkpoint: str) -> int:
    return int(Path(checkpoint).name.rpartition("-")[2] or 0)


def to_gguf(adapter: str, base_dir: str) -> str | None:
    """The adapter as a GGUF LoRA for llama.cpp (None where the converter is missing)."""
    from shipyard.training.base import converter_dir

    folder = converter_dir()
    if folder is None:
        emit("message", message="llama.cpp's converter is not installed: no GGUF adapter")
        return None
    outfile = str(Path(adapter).with_suffix(".gguf"))
    env = {**os.environ, "PYTHONPATH": str(folder / "gguf-py") + os.pathsep + str(folder)}
    done = subprocess.run(
        [sys.executable, str(folder / "convert_lora_to_gguf.py"), "--base", base_dir,
         "--outfile", outfile, "--outtype", "f32", adapter],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])  # the worker's log, the operator's to read
        raise RuntimeError("converting the adapter to GGUF failed (see the worker's log)")
    return outfile


def _detach_from(parent: int, nice: int) -> None:
    """A lower priority than the server's, and ended with it (Linux): a server killed
    with -9 leaves no training behind; the next one resumes the job."""
    os.nice(nice)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before the line above
        sys.exit(1)


def main() -> None:
    raw = json.loads(Path(sys.argv[1]).read_text())
    # the server, or on Ray the actor that started this worker
    parent = os.environ.get("SHIPYARD_WORKER_PARENT") or raw.get("parent") or os.getppid()
    _detach_from(int(parent), int(raw.get("nice", 10)))
    spec = Spec.load(sys.argv[1])
    import torch

    torch.set_num_threads(max(1, spec.threads))
    result = preference(spec) if spec.method == "dpo" else supervised(spec)
    emit("message", message="converting the adapter for llama.cpp")
    result["gguf"] = to_gguf(result["adapter"], spec.base_dir)
    emit("done", **result)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - reported to the server, which fails the job
        import traceback

        traceback.print_exc()  # the worker's log: paths and all, for the operator
        # our own messages name no paths; another error is named by its class only
        said = str(exc)[:300] if isinstance(exc, RuntimeError) else exc.__class__.__name__
        emit("error", message=f"training failed: {said}")
        sys.exit(1)
