"""The evaluation capability: versioned datasets, evaluation runs that score a target
(a gateway route or model, a prompt version, a registry release) on a dataset version
with scorers (plugins), comparisons of runs, online evaluation of live traces, and the
quality gates registry promotions check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, HUMAN, Role

if TYPE_CHECKING:
    from shipyard.evaluation.service import Evaluation
    from shipyard.platform import Platform

WRITERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Evaluation:
    from shipyard.evaluation.service import Evaluation

    return Evaluation(platform)


CAPABILITY = Capability(
    name="evaluation",
    order=70,  # after tracing and the registry: runs read traces, gates serve promotions
    permissions={
        "datasets:read": HUMAN,
        "datasets:write": WRITERS,
        "evals:read": HUMAN,
        "evals:run": WRITERS,  # start or cancel runs (they call the gateway as the caller)
        "evals:manage": ADMINS,  # online evaluation rules
    },
    routers=(
        "shipyard.evaluation.api.datasets:router",
        "shipyard.evaluation.api.datasets:uploads",
        "shipyard.evaluation.api.runs:router",
        "shipyard.evaluation.api.online:router",
    ),
    pages=(
        "shipyard.evaluation.gate_pages:router",
        "shipyard.evaluation.online_pages:router",
        "shipyard.evaluation.pages:router",
    ),
    cli=(
        ("eval", "shipyard.cli.evaluation:app"),
        ("datasets", "shipyard.cli.evaluation:datasets_app"),
    ),
    migrations="shipyard.evaluation:migrations",
    service=build,
)
