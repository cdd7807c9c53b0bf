"""Start-up stays light: no heavy library is imported by building and starting the app."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "llama_cpp", "sentence_transformers")


def test_creating_and_starting_the_app_imports_nothing_heavy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = f"""
import sys
from starlette.testclient import TestClient
from shipyard.app import create_app
from shipyard.settings import load_settings
app = create_app(load_settings(home={str(tmp_path)!r}))
with TestClient(app, base_url="http://localhost") as c:
    assert c.get("/readyz").status_code == 200
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
