"""Prompts in the registry: what a prompt version holds, and how the gateway gets them.

A prompt version's body is a template and its variables schema (`templates.py`), with
an optional default model (a gateway route, or what a caller names) and default
parameters:

    {"template": {"type": "chat", "messages": [...]},
     "variables": {"question": {"type": "string"}},
     "model": "support", "params": {"temperature": 0.2}}

`RegistryPrompts` is the gateway's `PromptSource`: when the gateway builds its
configuration snapshot it reads every prompt version's reference here (`name`,
`name@3`, `name@v3`, `name@latest`, `name@<alias>`, and `release@<alias>/name` for the
version a release pins), so a call that sends
`"prompt": "support-answer@production"` with `variables` is rendered from memory,
never by a database lookup on the call's path."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput
from shipyard.plugins import PromptSpec
from shipyard.registry import templates
from shipyard.registry.schemas import VersionCommon
from shipyard.registry.tables import AliasRow, AssetRow, VersionRow

GATEWAY_TIMEOUT_S = 0.25  # a render on the gateway's event loop
GATEWAY_MAX_CHARS = 400_000
OWN = frozenset({"prompt", "variables"})  # the caller's fields the prompt replaces


class PromptVersionIn(VersionCommon):
    template: dict[str, Any] = Field(description="{type: text, text} or {type: chat, messages}")
    variables: dict[str, Any] | None = Field(
        default=None, description="name -> {type, required, default, max_length}; inferred"
    )
    model: str | None = Field(default=None, max_length=200, description="the default model")
    params: dict[str, Any] = Field(default_factory=dict, description="default parameters")

    def checked(self) -> templates.PromptTemplate:
        """The template, parsed and compiled (InvalidInput names the field)."""
        return templates.parse_template({"template": self.template, "variables": self.variables})

    def body(self) -> dict[str, Any]:
        parsed = self.checked()
        return {
            "template": parsed.template.model_dump(exclude_none=True),
            "variables": {k: v.model_dump(exclude_none=True) for k, v in parsed.variables.items()},
            "model": self.model,
            "params": dict(self.params),
        }


def template_of(body: dict[str, Any]) -> templates.PromptTemplate:
    return templates.parse_template(
        {"template": body.get("template"), "variables": body.get("variables")}
    )


@dataclass(frozen=True)
class PromptVersion:
    """One prompt version in the gateway's snapshot (a `PromptSpec`)."""

    label: str
    body: dict[str, Any] = field(repr=False)

    @cached_property
    def template(self) -> templates.PromptTemplate:
        return template_of(self.body)

    def expand(self, body: dict[str, Any]) -> dict[str, Any]:
        variables = body.get("variables", {})
        if not isinstance(variables, dict):
            raise InvalidInput("'variables' must be an object", param="variables")
        rendered = templates.render(
            self.template,
            variables,
            max_output_chars=GATEWAY_MAX_CHARS,
            timeout_s=GATEWAY_TIMEOUT_S,
        )
        if rendered.messages is not None:
            messages = rendered.messages
        else:
            messages = [{"role": "user", "content": rendered.text or ""}]
        out = {**dict(self.body.get("params") or {})}
        out.update((k, v) for k, v in body.items() if k not in OWN)
        out["messages"] = messages
        if "model" not in out:
            default = self.body.get("model")
            if not default:
                raise InvalidInput(
                    f"model: the prompt {self.label} names no default model; send one",
                    param="model",
                )
            out["model"] = default
        return out


class RegistryPrompts:
    """The gateway's `PromptSource` over the registry's prompt versions."""

    def load(self, s: Session) -> dict[tuple[str, str], PromptSpec]:
        found: dict[tuple[str, str], PromptSpec] = {}
        by_id: dict[str, PromptVersion] = {}
        rows = s.execute(
            select(AssetRow.workspace_id, AssetRow.name, AssetRow.latest, VersionRow)
            .join(VersionRow, VersionRow.asset_id == AssetRow.id)
            .where(AssetRow.kind == "prompt")
        )
        for workspace_id, name, latest, version in rows:
            spec = PromptVersion(f"{name}@v{version.number}", dict(version.body))
            by_id[version.id] = spec
            for ref in (f"{name}@{version.number}", f"{name}@v{version.number}"):
                found[(workspace_id, ref)] = spec
            if version.number == latest:
                found[(workspace_id, name)] = found[(workspace_id, f"{name}@latest")] = spec
        aliases = s.execute(
            select(AssetRow.workspace_id, AssetRow.name, AliasRow.alias, AliasRow.version_id)
            .join(AliasRow, AliasRow.asset_id == AssetRow.id)
            .where(AssetRow.kind == "prompt")
        )
        for workspace_id, name, alias, version_id in aliases:
            if version_id in by_id:
                found[(workspace_id, f"{name}@{alias}")] = by_id[version_id]
        self._releases(s, found)
        return found

    @staticmethod
    def _releases(s: Session, found: dict[tuple[str, str], PromptSpec]) -> None:
        """`release@alias/prompt`: the prompt version a release version pins."""
        selectors: dict[str, list[str]] = {}  # release version id -> its selectors
        rows = s.execute(
            select(AssetRow.workspace_id, AssetRow.name, AssetRow.latest, VersionRow)
            .join(VersionRow, VersionRow.asset_id == AssetRow.id)
            .where(AssetRow.kind == "release")
        ).all()
        for _, _, latest, version in rows:
            picks = [str(version.number), f"v{version.number}"]
            selectors[version.id] = picks + (["latest"] if version.number == latest else [])
        aliases = s.execute(
            select(AliasRow.alias, AliasRow.version_id)
            .join(AssetRow, AssetRow.id == AliasRow.asset_id)
            .where(AssetRow.kind == "release")
        )
        for alias, version_id in aliases:
            selectors.setdefault(version_id, []).append(alias)
        for workspace_id, name, latest, version in rows:
            for m in (version.body or {}).get("members") or []:
                spec = found.get((workspace_id, f"{m.get('name')}@{m.get('version')}"))
                if m.get("kind") != "prompt" or spec is None:
                    continue
                if version.number == latest:
                    found[(workspace_id, f"{name}/{m['name']}")] = spec
                for selector in selectors.get(version.id, []):
                    found[(workspace_id, f"{name}@{selector}/{m['name']}")] = spec
