"""Docs that can be checked are checked."""

from __future__ import annotations

import re
from pathlib import Path

from shipyard.gateway.providers.base import registered
from shipyard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in Settings.model_fields if f"`{name}`" not in README]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_every_provider_kind_is_documented() -> None:
    missing = [kind for kind in registered() if f"`{kind}`" not in README]
    assert not missing, f"provider kinds missing from the README: {missing}"


def test_the_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make up", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_the_architecture_names_every_capability_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = [
        p.name
        for p in (ROOT / "src" / "shipyard").iterdir()
        if p.is_dir() and (p / "__init__.py").exists()
    ]
    missing = [p for p in packages if f"shipyard.{p}" not in text]
    assert not missing, f"docs/architecture.md does not mention: {missing}"
