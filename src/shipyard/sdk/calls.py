"""What every SDK resource shares: a call described once (`Call`), run by the sync or
the async client, and the error an API failure raises."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")


class ShipyardAPIError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | Upload | None = None  # a raw body instead of `json`
    headers: dict[str, str] = field(default_factory=dict)
    text: bool = False  # parse the body as text, not JSON
    # multipart/form-data: name -> (filename, bytes), and plain fields in `data`
    files: dict[str, tuple[str, bytes]] | None = None
    data: dict[str, str] | None = None


CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """A file sent as the raw body, read in chunks as it goes (never held whole);
    `progress` is called with the bytes sent so far."""

    path: Path
    size: int
    progress: Callable[[int], None] | None = None

    def chunks(self) -> Iterator[bytes]:
        sent = 0
        with self.path.open("rb") as f:
            while chunk := f.read(CHUNK):
                sent += len(chunk)
                yield chunk
                if self.progress is not None:
                    self.progress(sent)

    async def achunks(self) -> AsyncIterator[bytes]:
        import anyio

        sent = 0
        with self.path.open("rb") as f:
            while chunk := await anyio.to_thread.run_sync(f.read, CHUNK):
                sent += len(chunk)
                yield chunk
                if self.progress is not None:
                    self.progress(sent)


def _as(tp: Any) -> Callable[[Any], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(tp)
    return adapter.validate_python
