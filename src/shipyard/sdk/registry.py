"""The registry from the SDK: the model catalog (search, YAML import and export),
registered models and their versions, artifact uploads, promotions and rollback.

    client.registry.import_catalog(Path("catalog.yaml").read_text())
    client.registry.catalog(capabilities=["tools"], min_context=32000, order="cost")
    client.registry.create_model("support-model")
    client.registry.add_version("support-model", {"kind": "provider", "provider": "openai",
                                                  "model": "gpt-4o-mini"})
    client.registry.promote("support-model", 1, "production")

Approving a promotion needs a person (a signed-in user, four eyes), so with an API key
`approve` raises the server's 403 ("an approval needs a person"); rejecting, listing and
rolling back work with an approver's key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from shipyard.registry.catalog import CatalogEntryPublic, ImportResult
from shipyard.registry.schemas import (
    ArtifactPublic,
    AssetPublic,
    PolicyPublic,
    PromotionPublic,
    VersionPublic,
)
from shipyard.sdk.calls import Call, Upload, _as
from shipyard.sdk.prompts import split_ref

Kind = Literal["model", "prompt", "release", "pipeline"]
YAML = {"content-type": "application/yaml"}
OCTETS = {"content-type": "application/octet-stream"}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _plural(kind: str) -> str:
    return f"{_seg(kind)}s"


class Registry:
    """The registry routes, described once (`Call`) for the sync and the async client;
    with `AsyncClient` every method returns an awaitable."""

    def __init__(self, run: Callable[[Call[Any]], Any]) -> None:
        self._run = run

    # Catalog ---------------------------------------------------------------------------

    def catalog(self, **filters: Any) -> Any:
        """Entries matching every filter (the API's: `capabilities=[...]`, `min_context`,
        `max_cost`, `licence=[...]`, `commercial_use`, `order`, ...) ->
        list[CatalogEntryPublic]."""
        params = {k: v for k, v in filters.items() if v is not None and v != []}
        path = "/api/registry/catalog"
        return self._run(Call("GET", path, _as(list[CatalogEntryPublic]), params=params))

    def import_catalog(self, yaml_text: str, replace: bool = False) -> Any:
        """A catalog file (`models: [...]`), all or nothing; with `replace`, entries it
        omits are deleted -> ImportResult (created, updated, deleted)."""
        call = Call(
            "POST",
            "/api/registry/catalog/import",
            _as(ImportResult),
            params={"replace": "true"} if replace else {},
            content=yaml_text.encode("utf-8"),
            headers=YAML,
        )
        return self._run(call)

    def export_catalog(self) -> Any:
        """The workspace's entries as a catalog file (what `import_catalog` reads) -> str."""
        return self._run(Call("GET", "/api/registry/catalog/export", str, text=True))

    # Models ----------------------------------------------------------------------------

    def models(self) -> Any:
        return self._run(Call("GET", "/api/registry/models", _as(list[AssetPublic])))

    def model(self, name: str) -> Any:
        """One model with its latest version number and aliases -> AssetPublic."""
        return self._run(Call("GET", f"/api/registry/models/{_seg(name)}", _as(AssetPublic)))

    def versions(self, name: str, kind: Kind = "model") -> Any:
        path = f"/api/registry/{_plural(kind)}/{_seg(name)}/versions"
        return self._run(Call("GET", path, _as(list[VersionPublic])))

    def create_model(self, name: str, description: str = "") -> Any:
        body = {"name": name, "description": description}
        return self._run(Call("POST", "/api/registry/models", _as(AssetPublic), json=body))

    def add_version(
        self,
        name: str,
        source: dict[str, Any],
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        message: str = "",
        artifacts: list[dict[str, str]] | None = None,
    ) -> Any:
        """A new immutable version. `source` is what serves it: `{"kind": "provider",
        "provider": P, "model": M}`, `{"kind": "route", "route": R}`, `{"kind":
        "catalog", "entry": E}`, or uploaded files (gguf, huggingface, lora);
        `artifacts` are uploaded files by `{"sha256", "name"}` -> VersionPublic."""
        body = {
            "source": source,
            "params": params or {},
            "metadata": metadata or {},
            "message": message,
            "artifacts": artifacts or [],
        }
        path = f"/api/registry/models/{_seg(name)}/versions"
        return self._run(Call("POST", path, _as(VersionPublic), json=body))

    def resolve(self, name_at_selector: str, kind: Kind = "model") -> Any:
        """`name@selector` (an alias, a number, `latest`) now -> VersionPublic."""
        name, selector = split_ref(name_at_selector)
        path = f"/api/registry/{_plural(kind)}/{_seg(name)}/resolve/{_seg(selector)}"
        return self._run(Call("GET", path, _as(VersionPublic)))

    # Artifacts -------------------------------------------------------------------------

    def upload(
        self,
        path_or_bytes: str | Path | bytes,
        name: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """Upload a file (streamed from disk, never read whole) or bytes; `name`
        defaults to the file's name; `progress(sent)` after each chunk ->
        ArtifactPublic (its sha256 is what versions name)."""
        content: bytes | Upload
        if isinstance(path_or_bytes, bytes):
            if name is None:
                raise ValueError("name: give a name for bytes (e.g. model.safetensors)")
            content, size = path_or_bytes, len(path_or_bytes)
        else:
            path = Path(path_or_bytes)
            size = path.stat().st_size
            content, name = Upload(path, size, progress), name or path.name
        headers = {**OCTETS, "content-length": str(size)}
        call = Call(
            "POST",
            "/api/registry/artifacts",
            _as(ArtifactPublic),
            params={"name": name},
            content=content,
            headers=headers,
        )
        return self._run(call)

    # Promotions ------------------------------------------------------------------------

    def promote(
        self, name: str, version: int, environment: str, kind: Kind = "model", note: str = ""
    ) -> Any:
        """Ask to point `environment` at a version: `approved` at once where the
        environment needs no second person, else `pending` -> PromotionPublic."""
        body = {
            "kind": kind,
            "name": name,
            "version": version,
            "environment": environment,
            "note": note,
        }
        return self._run(Call("POST", "/api/registry/promotions", _as(PromotionPublic), json=body))

    def promotions(self, state: str | None = None) -> Any:
        params = {"state": state} if state else {}
        path = "/api/registry/promotions"
        return self._run(Call("GET", path, _as(list[PromotionPublic]), params=params))

    def approve(self, id: str, note: str = "") -> Any:
        path = f"/api/registry/promotions/{_seg(id)}/approve"
        return self._run(Call("POST", path, _as(PromotionPublic), json={"note": note}))

    def reject(self, id: str, note: str = "") -> Any:
        path = f"/api/registry/promotions/{_seg(id)}/reject"
        return self._run(Call("POST", path, _as(PromotionPublic), json={"note": note}))

    def set_alias(self, name: str, alias: str, version: int, kind: Kind = "model") -> Any:
        """Point a custom alias (`champion`, `canary`) at a version -> AssetPublic; an
        environment's alias moves only through `promote`."""
        path = f"/api/registry/{_plural(kind)}/{_seg(name)}/aliases/{_seg(alias)}"
        return self._run(Call("PUT", path, _as(AssetPublic), json={"version": version}))

    def rollback(self, name: str, alias: str, kind: Kind = "model") -> Any:
        """Point `alias` back at the version it pointed at before -> AssetPublic."""
        path = f"/api/registry/{_plural(kind)}/{_seg(name)}/aliases/{_seg(alias)}/rollback"
        return self._run(Call("POST", path, _as(AssetPublic)))

    def policies(self) -> Any:
        """The workspace's environments with what promoting into each takes."""
        return self._run(Call("GET", "/api/registry/policies", _as(list[PolicyPublic])))
