"""What every HTTP-speaking command shares: --url/--key, errors, tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shipyard.sdk import Client, ShipyardAPIError

console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Server URL (default: saved credential).")
]
KeyOpt = Annotated[str | None, typer.Option("--key", help="API key (default: saved credential).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` (as text, never rich markup) and exit with `code`."""
    err.print(Text("error: ", style="red") + Text(message))
    raise typer.Exit(code)


def read_file(path: Path, what: str, limit: int) -> str:
    """A UTF-8 file of at most `limit` bytes, or a clear error (exit 2)."""
    try:
        if path.stat().st_size > limit:
            fail(f"{path}: larger than {limit // 1024 // 1024} MiB")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}")


def write_out(output: Path | None, text: str, what: str) -> None:
    """`text` to stdout, or written to `output` atomically (a symlink there is replaced,
    never written through); says what was written on stderr."""
    if output is None:
        console.out(text, end="", highlight=False)
        return
    from shipyard.sdk.prompts import write_atomic

    try:
        write_atomic(output, text.encode(), mode=0o644)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    err.print(f"wrote {what} to {output}")


@contextmanager
def client(url: str | None, key: str | None) -> Iterator[Client]:
    try:
        with Client(url, key) as c:
            yield c
    except ShipyardAPIError as exc:
        err.print(f"[red]error:[/red] {exc.detail} ({exc.status} {exc.title})")
        raise typer.Exit(1) from None
    except (httpx.TransportError, OSError) as exc:  # connection refused and friends
        err.print(f"[red]error:[/red] cannot reach the server: {exc}")
        raise typer.Exit(1) from None


def table(rows: Sequence[Any], columns: Sequence[str], as_json: bool, title: str = "") -> None:
    if as_json:
        import orjson

        data = [r.model_dump(mode="json") for r in rows]
        console.print_json(orjson.dumps(data).decode())
        return
    t = Table(title=title or None)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[_cell(getattr(r, c, "")) for c in columns])
    console.print(t)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M"))
    return str(getattr(value, "value", value))
