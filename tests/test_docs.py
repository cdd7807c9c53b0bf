"""Docs that can be checked are checked."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from shipyard import plugins
from shipyard.plugins import PROVIDERS, Plugins
from shipyard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [name for name in Settings.model_fields if f"`{name}`" not in README]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_every_provider_kind_is_documented() -> None:
    missing = [kind for kind in Plugins().names(PROVIDERS) if f"`{kind}`" not in README]
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


def test_every_extension_contract_is_documented_with_an_example() -> None:
    """Each Protocol of `shipyard.plugins` has a section in docs/extending.md that names
    it and shows code."""
    text = (ROOT / "docs" / "extending.md").read_text()
    protocols = [
        name
        for name, obj in vars(plugins).items()
        if inspect.isclass(obj)
        and getattr(obj, "_is_protocol", False)
        and obj.__module__ == plugins.__name__
    ]
    assert len(protocols) >= 6
    for name in protocols:
        section = re.search(rf"^## [^\n]*`{name}`[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section is not None, f"docs/extending.md has no section for {name}"
        assert "```python" in section.group(1), f"the {name} section has no example"


def test_every_capability_is_in_the_architecture() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [c.name for c in Plugins().capabilities() if f"`{c.name}`" not in text]
    assert not missing, f"docs/architecture.md does not describe capabilities: {missing}"
