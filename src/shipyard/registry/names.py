"""Artifact names and the paths they become: a name is a relative POSIX path that can
never leave the folder it is placed in (`safe_name`), and a path on disk is resolved and
walked so that no component below its root is a symlink (`contained`)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from shipyard.errors import InvalidInput, ShipyardError

MAX_NAME = 1024  # characters in a whole name
MAX_SEGMENT = 255  # bytes (UTF-8) in one segment: what filesystems allow
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Characters that some decoder, filesystem or user agent may take for a dot, a slash or
# a backslash (NFKC folds most look-alikes, e.g. fullwidth '．' and '／'; these it keeps).
_LOOKALIKES = frozenset("\u2024\u2025\u2026\u3002\uff61\ufe52\u2215\u2044\u29f8\u2216\ufe68")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{d}{n}" for d in ("com", "lpt") for n in "123456789"}
)


def safe_name(raw: str, *, param: str = "name") -> str:
    """`raw` as a safe relative POSIX path (NFC-normalized), or InvalidInput naming
    `param`. Refused: empty names and segments, `.` and `..` segments, absolute paths,
    backslashes, colons (drive letters, alternate streams), NUL and other control or
    invisible format characters, percent escapes (`%2e`, `%252e`, `%c0%af`: a name is
    never decoded, so an encoded one is refused rather than guessed), characters that
    Unicode folds into a dot, slash or backslash (fullwidth `．．／`), segments ending
    in a dot or a space, and device names (`CON`, `nul.txt`)."""

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"{param}: {ascii(raw[:200])} {why}", param=param)

    if not isinstance(raw, str) or not raw:
        raise refuse("must be a non-empty relative path")
    if len(raw) > MAX_NAME:
        raise refuse(f"is longer than {MAX_NAME} characters")
    name = unicodedata.normalize("NFC", raw)
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise refuse(f"contains the control or invisible character U+{ord(ch):04X}")
    if "\\" in name:
        raise refuse("contains a backslash: use '/' between folders")
    if ":" in name:
        raise refuse("contains ':' (a drive letter or a stream name)")
    if _ESCAPE.search(name):
        raise refuse("contains a percent escape: names are taken literally, never decoded")
    folded = unicodedata.normalize("NFKC", name)
    for ch in "./\\:%":
        if folded.count(ch) != name.count(ch):
            raise refuse(f"contains a character that reads as '{ch}'")
    if any(ch in _LOOKALIKES for ch in name):
        raise refuse("contains a character that reads as a dot or a slash")
    if name.startswith("/"):
        raise refuse("is an absolute path: names are relative to the artifact's version")
    for segment in name.split("/"):
        if not segment:
            raise refuse("has an empty segment ('//' or a trailing '/')")
        if set(segment) <= {"."}:
            raise refuse(f"has a '{segment}' segment")
        if segment[-1] in ". " or segment[0].isspace():
            raise refuse("has a segment that starts with a space or ends with a dot or space")
        if segment.split(".")[0].strip().lower() in _RESERVED:
            raise refuse(f"uses the reserved device name '{segment}'")
        if len(segment.encode()) > MAX_SEGMENT:
            raise refuse(f"has a segment longer than {MAX_SEGMENT} bytes")
    return name


def contained(root: Path, parts: Iterable[str], *, create: bool = False) -> Path:
    """`root` joined with `parts` (already safe segments), refusing when any existing
    component below `root` is a symlink or the result resolves outside `root`; with
    `create`, the folders on the way are made (the last part is the file)."""
    base = root.resolve()
    path, names = base, list(parts)
    for i, part in enumerate(names):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            if not create or i == len(names) - 1:
                continue
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
            mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise ShipyardError(f"refusing a path through the symlink {path}")
        if i < len(names) - 1 and not stat.S_ISDIR(mode):
            raise ShipyardError(f"refusing a path through the non-folder {path}")
    if not path.resolve().is_relative_to(base):
        raise ShipyardError(f"refusing a path outside {base}")
    return path
