"""Rules of the code base that a linter does not check."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shipyard"
IGNORE = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(.*)$")


def test_every_type_ignore_names_its_code_and_gives_a_reason() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found = IGNORE.search(line)
            if found is None:
                continue
            code, rest = found.group(1), found.group(2)
            if not code or not re.match(r"\s*#\s*\S", rest):
                bad.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not bad, "type: ignore needs [code] and '# reason' on the same line:\n" + "\n".join(bad)


def test_services_and_stores_never_import_the_web_framework() -> None:
    """Routes are thin; services raise shipyard.errors and never import FastAPI."""
    layers = [SRC / "gateway" / "core", SRC / "gateway" / "config", SRC / "gateway" / "records"]
    layers += [SRC / "gateway" / "providers", SRC / "gateway" / "backends", SRC / "store"]
    offenders = [
        str(p.relative_to(SRC))
        for folder in layers
        for p in folder.rglob("*.py")
        if re.search(r"^\s*(from|import) fastapi", p.read_text(), re.M)
    ]
    assert not offenders, offenders
