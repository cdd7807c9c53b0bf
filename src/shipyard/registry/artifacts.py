"""The registry's artifact store: the files of model versions (weights, tokenizers,
configs), kept by content.

    put(source, name=...) -> ArtifactRef   stream in; the name and the format are checked
    open(sha256) -> Blob                   stream out, checked against the sha256 as it goes
    exists, verify, delete, blobs          one blob each, by its sha256

A blob is stored once under `sha256/ab/cd/<hex>` whatever names it is uploaded under
(the registry's tables keep the names; `ArtifactRef` carries one). An upload is spooled
to a temporary file in chunks (never held in memory), hashed and size-capped as it
arrives, its format checked (`shipyard.registry.formats`: only safetensors, GGUF, ONNX,
JSON, YAML, text and archives of those; pickles are refused), and only then made
visible: a rename after fsync here, a completed PUT on S3 (`shipyard.registry.s3`). A
crash or a source that fails halfway leaves no blob behind.

Names (`safe_name`) are relative POSIX paths that can never leave a folder: no `..`, no
absolute paths, backslashes, drive letters, NULs, percent escapes or look-alike dots and
slashes. Paths on disk (`contained`) are also resolved and refused when any component
below the root is a symlink. A blob whose bytes no longer match its sha256 is never
served whole: `Blob` holds back its last chunk until the checksum matched and raises
`CorruptArtifact` otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.registry.formats import check_format, kind_of
from shipyard.registry.names import contained, safe_name

log = logging.getLogger("shipyard.registry")

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "Blob",
    "CorruptArtifact",
    "LocalArtifacts",
    "check_format",
    "contained",
    "materialize",
    "safe_name",
]

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CorruptArtifact(ShipyardError):
    """A stored blob's bytes no longer match its sha256 (disk or bucket corruption)."""

    title = "Artifact corrupted"
    code = "artifact_corrupt"


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    sha256: str  # 64 lowercase hex digits
    size: int  # bytes
    name: str  # the safe name it was uploaded under (`safe_name`)
    format: str  # one of shipyard.registry.formats.FORMATS


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


Source = bytes | bytearray | memoryview | Readable | Iterable[bytes]


class ArtifactStore(Protocol):
    """Where artifact blobs are kept, by content. One implementation per engine
    (`LocalArtifacts`, `shipyard.registry.s3.S3Artifacts`);
    `tests/registry/test_artifacts.py` runs the same contract suite on each."""

    def put(self, source: Source, *, name: str, max_size: int | None = None) -> ArtifactRef:
        """Store a blob and return its reference. `source` is bytes, a binary file
        (read in chunks) or an iterable of byte chunks. Raises InvalidInput for a bad
        name (before reading anything), PayloadTooLarge past `max_size` (or the store's
        own cap, whichever is smaller), UnsupportedMedia for a refused format. Storing
        content already there is a no-op that returns the same sha256."""
        ...

    def open(self, sha256: str) -> Blob:
        """The blob's bytes, checked as they stream (NotFound: no such blob)."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> bool:
        """Read the whole blob and recompute its checksum: False (and a warning logged)
        when it no longer matches. NotFound: no such blob."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob (True: it was there). Blobs are shared by content: the caller
        deletes one only when no version refers to it any more."""
        ...

    def blobs(self) -> Iterator[str]:
        """The sha256 of every stored blob (for garbage collection and scrubbing)."""
        ...

    def close(self) -> None: ...


class Blob:
    """A stored blob being read: iterate it for its bytes (once), or `read()` it whole.
    The last chunk is held back until the whole blob matched its sha256, so a corrupted
    blob is never delivered complete: CorruptArtifact is raised instead. Close it (or use
    `with`) when done; iterating to the end closes it too."""

    def __init__(
        self, sha256: str, size: int, chunks: Iterator[bytes], close: Callable[[], None]
    ) -> None:
        self.sha256, self.size = sha256, size
        self._chunks, self._close = chunks, close

    def __iter__(self) -> Iterator[bytes]:
        digest, seen, held = hashlib.sha256(), 0, b""
        try:
            for chunk in self._chunks:
                digest.update(chunk)
                seen += len(chunk)
                if held:
                    yield held
                held = chunk
            if seen != self.size or digest.hexdigest() != self.sha256:
                log.warning("artifact %s is corrupted: its bytes no longer match", self.sha256)
                raise CorruptArtifact(f"artifact {self.sha256} is corrupted in the store")
            if held:
                yield held
        finally:
            self.close()

    def read(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Blob:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidInput("sha256: must be 64 lowercase hexadecimal digits", param="sha256")
    return value


def blob_key(sha256: str) -> str:
    """Where a blob lives below the store's root (or the bucket's prefix)."""
    h = check_sha256(sha256)
    return f"sha256/{h[:2]}/{h[2:4]}/{h}"


# Receiving -------------------------------------------------------------------------------


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
    elif hasattr(source, "read"):
        while chunk := source.read(CHUNK):
            yield bytes(chunk)
    else:
        for chunk in source:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise InvalidInput("file: the upload must be bytes", param="file")
            yield bytes(chunk)


def cap(*limits: int | None) -> int | None:
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


def receive(
    source: Source, *, name: str, max_size: int | None, spool: Path
) -> tuple[Path, ArtifactRef]:
    """Spool an upload into a new temporary file in `spool` (chunked, hashed, capped,
    fsynced), check its name and format, and return the file with its reference. The
    caller moves or uploads the file, then removes it; on any failure it is gone."""
    clean = safe_name(name)
    kind_of(clean)  # a refused extension (.pt, .bin) fails before a byte is read
    fd, tmp = tempfile.mkstemp(dir=spool, prefix=".upload-")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(source):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"{clean}: larger than the {max_size} bytes allowed")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        with open(tmp, "rb") as f:
            fmt = check_format(clean, f)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp), ArtifactRef(digest.hexdigest(), size, clean, fmt)


def materialize(store: ArtifactStore, files: Mapping[str, str], dest: Path) -> list[Path]:
    """Write a version's files (`name -> sha256`) under `dest` (for a runtime that wants
    a folder, such as a Hugging Face directory), each checked as it is read, written to
    a temporary file and renamed into place; never through a symlink, never outside
    `dest`. Returns the paths written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for raw, sha256 in files.items():
        target = contained(dest, safe_name(raw).split("/"), create=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, store.open(sha256) as blob:
                for chunk in blob:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        written.append(target)
    return written


# Files under a folder --------------------------------------------------------------------


class LocalArtifacts:
    """Blobs as read-only files under `root` (by default `<home>/artifacts`); uploads
    are spooled in `root/tmp` so the final rename stays on one filesystem."""

    def __init__(self, root: Path, *, max_size: int | None = None) -> None:
        self.root = Path(root)
        self.max_size = max_size

    def _path(self, sha256: str, *, create: bool = False) -> Path:
        return contained(self.root, blob_key(sha256).split("/"), create=create)

    def _spool(self) -> Path:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        return contained(self.root, ["tmp"])  # refused if someone made it a symlink

    def put(self, source: Source, *, name: str, max_size: int | None = None) -> ArtifactRef:
        safe_name(name)
        tmp, ref = receive(
            source, name=name, max_size=cap(self.max_size, max_size), spool=self._spool()
        )
        try:
            final = self._path(ref.sha256, create=True)
            try:
                present = os.lstat(final).st_size == ref.size
            except FileNotFoundError:
                present = False
            if not present:  # a blob of the wrong size (a torn copy) is replaced
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return ref

    def open(self, sha256: str) -> Blob:
        path = self._path(sha256)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found") from None
        f = os.fdopen(fd, "rb")
        return Blob(sha256, os.fstat(fd).st_size, iter(lambda: f.read(CHUNK), b""), f.close)

    def exists(self, sha256: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self._path(sha256)).st_mode)
        except FileNotFoundError:
            return False

    def verify(self, sha256: str) -> bool:
        return verify_blob(self.open(sha256))

    def delete(self, sha256: str) -> bool:
        try:
            os.unlink(self._path(sha256))
        except FileNotFoundError:
            return False
        return True

    def blobs(self) -> Iterator[str]:
        top = self.root / "sha256"
        if not top.is_dir() or top.is_symlink():
            return
        for path in top.glob("*/*/*"):
            if _SHA256.match(path.name) and blob_key(path.name) == str(path.relative_to(self.root)):
                yield path.name

    def path(self, sha256: str) -> Path:
        """The blob's file, for a runtime that loads from a path (llama.cpp and a GGUF):
        NotFound when absent. Not checked here: call `verify` first when it matters."""
        path = self._path(sha256)
        if not self.exists(sha256):
            raise NotFound(f"artifact {sha256} not found")
        return path

    def close(self) -> None:
        pass


def verify_blob(blob: Blob) -> bool:
    """Read a blob to its end: False when its bytes no longer match its sha256."""
    try:
        for _ in blob:
            pass
    except CorruptArtifact:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
