"""`client.registry` against the real app on loopback: the catalog round trip, models
and versions, an upload streamed from disk, promotion (a second person approves),
rollback; the async client speaks the same calls."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shipyard import AsyncClient, Client, ShipyardAPIError
from shipyard.registry.catalog import CatalogEntryPublic
from tests.gateway.conftest import Env, make_env
from tests.registry.support import person, safetensors
from tests.registry.test_catalog import CATALOG


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Env]:
    yield from make_env(tmp_path)


def _mine(entries: list[CatalogEntryPublic]) -> list[str]:
    return [e.name for e in entries if not e.builtin]


def test_catalog_models_upload_promotion(gw: Env, tmp_path: Path) -> None:
    gw.provider()
    with Client(gw.url, gw.owner_key, cache_dir=tmp_path / "cache") as c:
        counts = c.registry.import_catalog(CATALOG)
        assert (counts.created, counts.updated, counts.deleted) == (3, 0, 0)
        assert _mine(c.registry.catalog(capabilities=["tools"])) == ["small-tools", "big-tools"]
        assert _mine(c.registry.catalog(capabilities=["tools"], min_context=64000)) == ["big-tools"]
        assert _mine(c.registry.catalog(commercial_use=False)) == ["tiny-no-tools"]
        assert _mine(c.registry.catalog(licence=["apache-2.0"], order="name")) == ["small-tools"]
        text = c.registry.export_catalog()
        assert len(yaml.safe_load(text)["models"]) == 3
        only = yaml.safe_load(text)
        only["models"] = only["models"][:1]
        counts = c.registry.import_catalog(yaml.safe_dump(only), replace=True)
        assert (counts.updated, counts.deleted) == (1, 2)
        with pytest.raises(ShipyardAPIError) as bad:
            c.registry.import_catalog("models:\n  - name: x\n    type: telepathy\n")
        assert bad.value.status == 400 and "models.0.type" in bad.value.detail

        assert c.registry.create_model("support-model", "Answers").name == "support-model"
        weights = tmp_path / "model.safetensors"
        weights.write_bytes(safetensors(32))
        sent: list[int] = []
        blob = c.registry.upload(weights, progress=sent.append)
        assert blob.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert (blob.name, blob.format, sent[-1]) == ("model.safetensors", "safetensors", blob.size)
        assert c.registry.upload(safetensors(32), "copy.safetensors").sha256 == blob.sha256
        source = {"kind": "provider", "provider": "fake", "model": "model-one"}
        v1 = c.registry.add_version(
            "support-model",
            source,
            params={"temperature": 0.1},
            metadata={"owner": "search"},
            message="first",
            artifacts=[{"sha256": blob.sha256, "name": "model.safetensors"}],
        )
        assert (v1.number, v1.body["params"], v1.message) == (1, {"temperature": 0.1}, "first")
        v2 = c.registry.add_version("support-model", {"kind": "route", "route": "other"})
        assert v2.number == 2
        assert [m.name for m in c.registry.models()] == ["support-model"]

        assert c.registry.promote("support-model", 1, "dev").state == "approved"
        assert c.registry.resolve("support-model@dev").number == 1
        pending = c.registry.promote("support-model", 2, "production", note="ready")
        assert pending.state == "pending" and pending.note == "ready"
        assert [p.id for p in c.registry.promotions(state="pending")] == [pending.id]
        with pytest.raises(ShipyardAPIError) as refused:
            c.registry.approve(pending.id)
        assert refused.value.status == 403 and "needs a person" in refused.value.detail
        approver = person(gw, "bo@example.com", "admin")
        r = approver.post(f"/api/registry/promotions/{pending.id}/approve", json={})
        assert r.status_code == 200, r.text
        assert c.registry.resolve("support-model@production").number == 2
        assert c.registry.model("support-model").aliases == {"dev": 1, "production": 2}

        c.registry.promote("support-model", 1, "production")
        later = c.registry.promotions(state="pending")[0]
        assert c.registry.reject(later.id, note="not now").state == "rejected"
        c.registry.promote("support-model", 2, "dev")
        assert c.registry.rollback("support-model", "dev").aliases["dev"] == 1
        with pytest.raises(ShipyardAPIError) as gone:
            c.registry.resolve("support-model@nowhere")
        assert gone.value.status == 404


async def test_async_client_speaks_the_same_calls(gw: Env, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(safetensors(8))
    async with AsyncClient(gw.url, gw.owner_key, cache_dir=tmp_path / "cache") as c:
        await c.registry.import_catalog(CATALOG)
        assert _mine(await c.registry.catalog(max_cost=0.001)) == [
            "tiny-no-tools",
            "small-tools",
        ]
        assert "big-tools" in await c.registry.export_catalog()
        blob = await c.registry.upload(weights)
        assert blob.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
        await c.registry.create_model("ranker")
        await c.registry.add_version("ranker", {"kind": "catalog", "entry": "small-tools"})
        done = await c.registry.promote("ranker", 1, "staging")
        assert done.state == "approved"
        assert (await c.registry.resolve("ranker@staging")).number == 1
