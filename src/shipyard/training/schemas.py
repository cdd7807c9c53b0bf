"""The body of a fine-tuning job, as OpenAI's `POST /v1/fine_tuning/jobs` takes it.

Hyperparameters are OpenAI's (`n_epochs`, `batch_size`, `learning_rate_multiplier`, each
a number or "auto"), given at the top level or under `method.supervised`, plus
Shipyard's own for LoRA: `lora_rank`, `lora_alpha`, `max_length` (tokens an example is
cut to) and `checkpoint_every` (steps).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipyard.inputs import Strict

# what "auto" stands for, and Shipyard's own LoRA settings' defaults
DEFAULTS = {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.0, "beta": 0.1}
EXTRAS = {"lora_rank": 16, "lora_alpha": 32, "max_length": 512, "checkpoint_every": 50}


class Hyperparameters(Strict):
    n_epochs: int | Literal["auto"] = Field(default="auto", ge=1, le=50)
    batch_size: int | Literal["auto"] = Field(default="auto", ge=1, le=256)
    learning_rate_multiplier: float | Literal["auto"] = Field(default="auto", gt=0, le=100)
    lora_rank: int = Field(default=EXTRAS["lora_rank"], ge=1, le=256)
    lora_alpha: int = Field(default=EXTRAS["lora_alpha"], ge=1, le=1024)
    max_length: int = Field(default=EXTRAS["max_length"], ge=16, le=8192)
    checkpoint_every: int = Field(default=EXTRAS["checkpoint_every"], ge=1, le=100_000)


class DpoHyperparameters(Hyperparameters):
    beta: float | Literal["auto"] = Field(default="auto", gt=0, le=10)


class Supervised(Strict):
    hyperparameters: Hyperparameters | None = None


class Dpo(Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(Strict):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None
    reinforcement: dict[str, Any] | None = None


class JobIn(Strict):
    model: str = Field(min_length=1, max_length=128)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, min_length=1, max_length=64)
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    integrations: list[Any] | None = Field(default=None, max_length=0)

    def method_type(self) -> str:
        return self.method.type if self.method is not None else "supervised"

    def resolved(self) -> dict[str, Any]:
        """Every hyperparameter's value ("auto" as Shipyard's default)."""
        given: Hyperparameters | None = self.hyperparameters
        method = self.method
        if method is not None and method.supervised is not None:
            given = method.supervised.hyperparameters or given
        if method is not None and method.dpo is not None:
            given = method.dpo.hyperparameters or given
        if given is None:
            given = DpoHyperparameters() if self.method_type() == "dpo" else Hyperparameters()
        out: dict[str, Any] = given.model_dump()
        if self.method_type() == "dpo":
            out.setdefault("beta", "auto")
        for key, default in DEFAULTS.items():
            if out.get(key) == "auto":
                out[key] = default
        return out


# what the API answers (OpenAI's objects), as the SDK and the CLI read them -------------


class JobPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    model: str
    status: str
    created_at: int
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = {}
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    step: int = 0
    total_steps: int = 0


class EventPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None = None


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    created_at: int
    step_number: int
    fine_tuned_model_checkpoint: str
    metrics: dict[str, Any] = {}
