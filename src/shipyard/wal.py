"""The write-ahead log: Shipyard's one durable hand-off between the request path and a
store that is written later, in batches (request records today, trace spans next).

    log = WriteAheadLog.claim(home / "wal" / "records", on_drop=dropped.inc)
    for position, payload in log.replay():     # what a previous process left uncommitted
        ...                                    # store it (idempotently), then
    log.commit(position)
    position = log.append(payload)             # on the hot path: one os.write, or None
    ...                                        # when over `max_bytes` (a drop is counted)
    log.commit(position)                       # stored elsewhere: segments below go

On disk, a directory (0700) of segment files (0600) named by a 12-digit number,
`000000000001.seg`, each a run of entries `length (u32) | crc32 (u32) | payload`, and a
`checkpoint` file holding the last committed position. An append is one `os.write` on an
O_APPEND descriptor before it returns: in the page cache, it survives `kill -9` of the
process. With `fsync_interval` a background thread fsyncs every so often (one fsync
for many appends: power-loss durability within that interval). On open, a torn or
corrupt tail (a kill mid-write, a lost page) is found by length and crc and cut off;
opening never raises for what it finds in the files.

A directory is held by one log at a time (an exclusive `flock` on its `lock` file).
Processes sharing a data dir (`shipyard up --workers N`) each `claim` the first free slot
under a parent (`parent/0`, `parent/1`, ...) and replay the `orphans`: slots that no live
process holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("shipyard.wal")

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
_CHECKPOINT = struct.Struct("<QQI")  # segment, offset, crc32 of the first 16 bytes
_SUFFIX = ".seg"
_MAX_ENTRY = 1 << 30
_MAX_SLOTS = 1024


class Position(NamedTuple):
    """Where an entry ends: its segment and the byte offset just past it. Positions
    order as the entries were appended."""

    segment: int
    offset: int


def private_dir(path: Path) -> None:
    """Make `path` a 0700 directory, creating it and its missing parents (0700);
    existing parents are left as they are. A symlink is refused."""
    missing = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} is not a directory (a symlink is refused)")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def _open(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


class WriteAheadLog:
    """A bounded, segmented, append-only log in one directory (see the module's
    docstring). Every method is thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 256 << 20,
        segment_bytes: int = 16 << 20,
        fsync_interval: float | None = None,
        on_drop: Callable[[], Any] | None = None,
    ) -> None:
        """Open (or create) the log in `directory`; raises `BlockingIOError` when another
        log holds it."""
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval = fsync_interval
        self.dropped = 0  # appends refused
        self.syncs = 0  # group flushes that fsynced appended data
        self._on_drop = on_drop
        private_dir(directory)
        self._lock_fd = _open(directory / "lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise BlockingIOError(f"{directory} is held by another write-ahead log") from None
        self._lock = threading.Lock()  # appends, rolls and the size bookkeeping
        self._commit_lock = threading.Lock()  # one checkpoint write at a time
        self._checkpoint_fd: int | None = None
        self._sync_lock = threading.Lock()
        self._fd: int | None = None  # the segment being appended to (opened on first use)
        self._segment = 0
        self._size = 0  # of that segment
        self._retired: list[int] = []  # rolled-over descriptors the flusher still fsyncs
        self._dirty = self._dir_dirty = False
        self._closed = False
        self._warned = False
        self._committed = self._read_checkpoint()
        self._sizes: dict[int, int] = {}  # segment -> valid bytes, from the committed one on
        self._recover()
        self._next = max([self._committed.segment, *self._sizes]) + 1
        self._pending = self._uncommitted()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if fsync_interval is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="shipyard-wal-fsync", daemon=True
            )
            self._flusher.start()

    # Slots for processes that share a data dir ------------------------------------------

    @classmethod
    def claim(cls, parent: Path, **options: Any) -> WriteAheadLog:
        """The log in the first slot under `parent` (`parent/0`, `parent/1`, ...) that no
        other log holds."""
        private_dir(parent)
        for index in range(_MAX_SLOTS):
            try:
                return cls(parent / str(index), **options)
            except BlockingIOError:
                continue
        raise RuntimeError(f"{parent}: all {_MAX_SLOTS} write-ahead log slots are held")

    @classmethod
    def orphans(cls, parent: Path, **options: Any) -> Iterator[WriteAheadLog]:
        """The slots under `parent` that no live process holds, each opened (and so held)
        for the caller to replay, commit and close."""
        if not parent.is_dir():
            return
        for child in sorted(parent.iterdir(), key=lambda p: (len(p.name), p.name)):
            if not child.name.isdigit() or child.is_symlink() or not child.is_dir():
                continue
            try:
                orphan = cls(child, **options)
            except BlockingIOError:
                continue
            try:
                yield orphan
            finally:
                orphan.close()

    # The hot path -----------------------------------------------------------------------

    def append(self, payload: bytes) -> Position | None:
        """Write one entry to the OS (one `os.write`) and return where it ends; None,
        counting a drop, when the log is closed, over `max_bytes` uncommitted, or the
        write fails (a full disk)."""
        entry = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._closed or self._pending + len(entry) > self.max_bytes:
                self._drop()
                return None
            full = self._fd is None or self._size >= self.segment_bytes
            if full and not self._roll():
                self._drop()
                return None
            assert self._fd is not None
            try:
                written = os.write(self._fd, entry)
                while written < len(entry):  # rare: a signal or a nearly full disk
                    written += os.write(self._fd, entry[written:])
            except OSError as exc:
                with contextlib.suppress(OSError):  # no torn entry before later ones
                    os.ftruncate(self._fd, self._size)
                if not self._warned:
                    log.error("write-ahead log %s: append failed: %s", self.directory, exc)
                    self._warned = True
                self._drop()
                return None
            self._warned = False
            self._size += len(entry)
            self._sizes[self._segment] = self._size
            self._pending += len(entry)
            self._dirty = True
            return Position(self._segment, self._size)

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop()

    def _roll(self) -> bool:
        """Start the next segment (under the lock)."""
        try:
            fd = _open(self._path(self._next), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        except OSError as exc:
            self._next += 1  # the next try takes the next number
            log.error("write-ahead log %s: cannot start a segment: %s", self.directory, exc)
            return False
        if self._fd is not None:
            if self.fsync_interval is None:
                os.close(self._fd)
            else:
                self._retired.append(self._fd)
        self._fd, self._segment, self._size = fd, self._next, 0
        self._sizes[self._segment] = 0
        self._next += 1
        self._dir_dirty = True
        return True

    # Replay and commit -------------------------------------------------------------------

    def replay(self) -> Iterator[tuple[Position, bytes]]:
        """The uncommitted entries, oldest first, each with its position (to commit)."""
        with self._lock:
            start = self._committed
            segments = sorted(self._sizes.items())
        for segment, size in segments:
            offset = start.offset if segment == start.segment else 0
            if offset >= size:
                continue
            try:
                with open(self._path(segment), "rb") as f:
                    f.seek(offset)
                    data = f.read(size - offset)
            except OSError as exc:
                log.error("write-ahead log %s: cannot read %s: %s", self.directory, segment, exc)
                continue
            for end, payload in _entries(data):
                yield Position(segment, offset + end), payload

    def commit(self, position: Position) -> None:
        """Everything up to `position` is stored elsewhere: replay starts after it, and
        the segments wholly below it are deleted."""
        with self._commit_lock:
            with self._lock:
                if self._closed or position <= self._committed:
                    return
                self._committed = position
                doomed = [
                    s
                    for s, size in self._sizes.items()
                    if s < position.segment
                    or (s == position.segment and s != self._segment and position.offset >= size)
                ]
                for s in doomed:
                    del self._sizes[s]
                self._pending = self._uncommitted()
            self._write_checkpoint(position)  # before the segments go
            for s in doomed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(s))
            if doomed:
                self._dir_dirty = True

    @property
    def pending_bytes(self) -> int:
        """Bytes appended and not yet committed (what `max_bytes` bounds)."""
        return self._pending

    # Durability and life cycle --------------------------------------------------------------

    def sync(self) -> None:
        """fsync what was appended (and the directory, after a roll or a deletion)."""
        with self._sync_lock:
            with self._lock:
                fd = self._fd if self._dirty else None
                retired, self._retired = self._retired, []
                self._dirty = False
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            for old in retired:
                with contextlib.suppress(OSError):
                    os.fsync(old)
                os.close(old)
            if fd is not None:
                try:
                    os.fsync(fd)
                    self.syncs += 1
                except OSError as exc:
                    log.error("write-ahead log %s: fsync failed: %s", self.directory, exc)
            if dir_dirty:
                dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    def _flush_loop(self) -> None:
        assert self.fsync_interval is not None
        while not self._stop.wait(self.fsync_interval):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep flushing; the next round retries
                log.exception("write-ahead log %s: group flush failed", self.directory)

    def close(self) -> None:
        """Stop the flusher, fsync when flushing is on, and release the directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # appends from now on are refused
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self.sync()
        with self._lock:
            for fd in [*self._retired, *([self._fd] if self._fd is not None else [])]:
                os.close(fd)
            self._retired, self._fd = [], None
        with self._commit_lock:
            if self._checkpoint_fd is not None:
                os.close(self._checkpoint_fd)
                self._checkpoint_fd = None
        os.close(self._lock_fd)  # releases the flock

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # On disk ------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{_SUFFIX}"

    def _uncommitted(self) -> int:
        start = self._committed
        return sum(
            size - (start.offset if s == start.segment else 0)
            for s, size in self._sizes.items()
            if s >= start.segment
        )

    def _read_checkpoint(self) -> Position:
        try:
            data = (self.directory / "checkpoint").read_bytes()
            segment, offset, crc = _CHECKPOINT.unpack(data)
        except (OSError, struct.error):
            return Position(0, 0)
        if crc != zlib.crc32(data[:16]):
            log.warning("write-ahead log %s: checkpoint corrupt; replaying all", self.directory)
            return Position(0, 0)
        return Position(segment, offset)

    def _write_checkpoint(self, position: Position) -> None:
        """One pwrite of 20 bytes over the same file (a rename per commit cost ~0.5 ms);
        a torn one fails its crc and replay starts earlier: more, never less."""
        head = struct.pack("<QQ", *position)
        if self._checkpoint_fd is None:
            self._checkpoint_fd = _open(self.directory / "checkpoint", os.O_RDWR | os.O_CREAT)
        os.pwrite(self._checkpoint_fd, head + struct.pack("<I", zlib.crc32(head)), 0)

    def _recover(self) -> None:
        """Find the segments, drop those wholly committed, cut torn or corrupt tails."""
        found = []
        for path in self.directory.iterdir():
            name = path.name
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                found.append((int(name[: -len(_SUFFIX)]), path))
        for segment, path in sorted(found):
            try:
                if segment < self._committed.segment:
                    path.unlink()
                    continue
                start = self._committed.offset if segment == self._committed.segment else 0
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
                valid = start + _valid_length(data)
                if valid < start + len(data):
                    log.warning(
                        "write-ahead log %s: segment %d: cut a torn or corrupt tail of %d bytes",
                        self.directory,
                        segment,
                        start + len(data) - valid,
                    )
                    fd = _open(path, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, valid)
                    finally:
                        os.close(fd)
                self._sizes[segment] = valid
            except OSError as exc:
                log.error(
                    "write-ahead log %s: segment %d unreadable: %s", self.directory, segment, exc
                )


def _entries(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each whole, intact entry of `data`, up to the first
    torn or corrupt one."""
    offset, view = 0, memoryview(data)
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if length > _MAX_ENTRY or end > len(data):
            return
        payload = bytes(view[offset + _HEADER.size : end])
        if zlib.crc32(payload) != crc:
            return
        yield end, payload
        offset = end


def _valid_length(data: bytes) -> int:
    valid = 0
    for end, _ in _entries(data):
        valid = end
    return valid
