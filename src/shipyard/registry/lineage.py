"""Lineage of a version as a graph: what it came from (its base model, datasets, the job
that produced it, its evaluation runs, from the version's `lineage`) and what uses it
(prompts whose default model names it, releases that pin it).

    {"nodes": [{"id": "model:support@2", "kind": "model", "label": "support v2"}, ...],
     "edges": [{"from": "dataset:tickets@3", "to": "model:support@2",
                "relation": "trained_on"}, ...]}

Edges point from the input to what was made of it, or from the version to its user."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.registry import assets
from shipyard.registry.tables import AssetRow, VersionRow

MAX_USERS = 200


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, str]] = []

    def node(self, node_id: str, kind: str, label: str, **extra: Any) -> str:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label, **extra})
        return node_id

    def edge(self, src: str, dst: str, relation: str) -> None:
        edge = {"from": src, "to": dst, "relation": relation}
        if edge not in self.edges:
            self.edges.append(edge)

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes.values()), "edges": self.edges}


def version_id(kind: str, name: str, number: int) -> str:
    return f"{kind}:{name}@{number}"


def graph(
    s: Session,
    asset: AssetRow,
    version: VersionRow,
    sources: Sequence[Callable[[Session, str, str], list[tuple[str, str, str]]]] = (),
) -> dict[str, Any]:
    """`sources`: other capabilities' nodes that evaluated the version (`Platform.
    lineage_sources`: evaluation runs)."""
    g = Graph()
    me = g.node(
        version_id(asset.kind, asset.name, version.number),
        asset.kind,
        f"{asset.name} v{version.number}",
        current=True,
    )
    lineage = dict(version.lineage or {})
    base = lineage.get("base_model")
    if base:
        g.edge(_ref_node(s, g, asset.workspace_id, "model", str(base)), me, "base_of")
    source = dict((version.body or {}).get("source") or {})
    if source.get("kind") == "lora" and source.get("base"):
        g.edge(_ref_node(s, g, asset.workspace_id, "model", str(source["base"])), me, "base_of")
    for d in lineage.get("datasets") or []:
        label = f"{d.get('name')}" + (f" v{d['version']}" if d.get("version") else "")
        node = g.node(f"dataset:{d.get('name')}@{d.get('version', '')}", "dataset", label)
        g.edge(node, me, "trained_on")
    if lineage.get("job"):
        g.edge(g.node(f"job:{lineage['job']}", "job", str(lineage["job"])), me, "produced")
    for run in lineage.get("evaluations") or []:
        g.edge(me, g.node(f"evaluation:{run}", "evaluation", str(run)), "evaluated_by")
    subject = version_id(asset.kind, asset.name, version.number)
    for extra in sources:
        for node_id, kind, label in extra(s, asset.workspace_id, subject):
            g.edge(me, g.node(node_id, kind, label), "evaluated_by")
    model_ref = (version.body or {}).get("model")  # a prompt's default model
    if asset.kind == "prompt" and isinstance(model_ref, str) and model_ref:
        g.edge(_ref_node(s, g, asset.workspace_id, "model", model_ref), me, "default_model_of")
    for m in (version.body or {}).get("members") or []:  # a release's members
        node = g.node(
            version_id(m["kind"], m["name"], m["version"]),
            m["kind"],
            f"{m['name']} v{m['version']}",
        )
        g.edge(node, me, "pinned_in")
    _users(s, g, asset, version, me)
    return g.as_dict()


def _ref_node(s: Session, g: Graph, workspace_id: str, kind: str, raw: str) -> str:
    """A node for a reference: the version it names now, or the reference itself."""
    try:
        ref = assets.parse_ref(raw)
        asset, version = assets.resolve(s, workspace_id=workspace_id, kind=kind, ref=ref)
    except (InvalidInput, NotFound):
        return g.node(f"{kind}:{raw}", kind, raw, registered=False)
    return g.node(
        version_id(kind, asset.name, version.number), kind, f"{asset.name} v{version.number}"
    )


def _users(s: Session, g: Graph, asset: AssetRow, version: VersionRow, me: str) -> None:
    """Releases that pin this version; prompts whose default model names this model."""
    rows = s.execute(
        select(AssetRow, VersionRow)
        .join(VersionRow, VersionRow.asset_id == AssetRow.id)
        .where(
            AssetRow.workspace_id == asset.workspace_id, AssetRow.kind.in_(("release", "prompt"))
        )
        .order_by(VersionRow.created_at.desc())
        .limit(5000)
    ).all()
    found = 0
    for other, v in rows:
        body = v.body or {}
        uses = False
        if other.kind == "release":
            uses = any(
                m.get("kind") == asset.kind
                and m.get("name") == asset.name
                and m.get("version") == version.number
                for m in body.get("members") or []
            )
        elif asset.kind == "model" and isinstance(body.get("model"), str):
            uses = body["model"].partition("@")[0] == asset.name
        if uses:
            node = g.node(
                version_id(other.kind, other.name, v.number),
                other.kind,
                f"{other.name} v{v.number}",
            )
            g.edge(me, node, "pinned_in" if other.kind == "release" else "default_model_of")
            found += 1
            if found >= MAX_USERS:
                return
