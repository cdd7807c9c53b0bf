"""The training capability: fine-tuning jobs (LoRA with `peft` on `transformers` for
local GGUF base models) run in a worker process at a lower priority, checkpointed and
resumed after a restart, through OpenAI's fine-tuning API (`/v1/fine_tuning/jobs`, files
from `/v1/files` with purpose `fine-tune`); the model a job makes is served at once as
`ft:<base>:<suffix>:<id>` on `/v1/chat/completions` (its adapter on the base's GGUF, on
llama.cpp)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.capability import Capability
from shipyard.identity.roles import HUMAN, Role

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.training.service import Training

WRITERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Training:
    from shipyard.training.service import Training

    return Training(platform)


def _openai(platform: Platform) -> Any:
    from shipyard.training.openai_api import mount

    return mount(platform)


CAPABILITY = Capability(
    name="training",
    order=85,  # after the gateway (it serves the models jobs make) and retrieval (files)
    permissions={
        "training:read": HUMAN,
        "training:write": WRITERS,  # a job takes the machine's cores for minutes
    },
    pages=("shipyard.training.pages:router",),
    cli=(("finetune", "shipyard.cli.training:app"), ("demo", "shipyard.cli.demo:app")),
    migrations="shipyard.training:migrations",
    service=build,
    mounts={"/v1/fine_tuning": _openai},
    openapi="shipyard.training.openai_doc:document",
)
