"""The retrieval capability: knowledge bases of documents, chunked, embedded through the
gateway and indexed (a vector index and the database's full-text index), searched by
vector, by text, or both fused; a knowledge base may follow a table in another
database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, CALLERS, HUMAN, Role

if TYPE_CHECKING:
    from shipyard.platform import Platform
    from shipyard.retrieval.service import Retrieval

WRITERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Retrieval:
    from shipyard.retrieval.service import Retrieval

    return Retrieval(platform)


def _openai(platform: Platform) -> Any:
    from shipyard.retrieval.openai_api import mount

    return mount(platform)


CAPABILITY = Capability(
    name="retrieval",
    order=75,  # after the gateway (it embeds through it)
    permissions={
        "kb:read": HUMAN,
        "kb:write": WRITERS,
        # a source table is a connection Shipyard makes: admin configuration
        "kb:source": ADMINS,
        # searching embeds the query through the gateway as the caller
        "kb:search": CALLERS,
    },
    routers=(
        "shipyard.retrieval.api.knowledge_bases:router",
        "shipyard.retrieval.api.knowledge_bases:uploads",
        "shipyard.retrieval.api.sources:router",
    ),
    pages=("shipyard.retrieval.pages:router",),
    cli=(("kb", "shipyard.cli.retrieval:app"),),
    migrations="shipyard.retrieval:migrations",
    service=build,
    # OpenAI's Files and Vector Stores API (before the gateway's /v1/: longer prefixes first)
    mounts={"/v1/files": _openai, "/v1/vector_stores": _openai},
    openapi="shipyard.retrieval.openai_doc:document",
)
