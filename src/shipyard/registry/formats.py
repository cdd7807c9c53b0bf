"""Which artifact files the registry accepts, decided by their name and their bytes.

    safetensors  .safetensors      the 8-byte header length fits, the header is a JSON
                                   object, the tensors' offsets tile the data exactly
                                   and their sizes match dtype x shape
    gguf         .gguf             magic GGUF, version 1-3, the fixed header complete
    onnx         .onnx             the top-level protobuf fields parse (tags, varints,
                                   lengths inside the file), with ir_version (field 1,
                                   a varint) and graph (field 7, a message)
    json         .json             UTF-8 that parses (whole, up to PARSE_LIMIT)
    yaml         .yaml .yml        yaml.safe_load_all succeeds (up to PARSE_LIMIT)
    text         .txt .md .csv ..  UTF-8 without NUL bytes (streamed, any size)
                 (or no suffix)
    tar, zip     .tar .tar.gz      each member: a safe and unique name, a regular file
                 .tgz .zip         or folder (no links, devices or fifos), checked the
                                   same way; no nested archives, no encryption, no
                                   unpacking to more than UNPACKED_RATIO x its size

Refused with UnsupportedMedia, naming what they are: pickles by name (`.bin .pt .pth
.pkl .pickle .ckpt .joblib .dill`, and PyTorch's `data.pkl` inside an archive) and by
content (a pickle protocol 2-5 opcode, `\\x80\\x02`-`\\x80\\x05`, at the start of any
file), numpy files (`.npy` object arrays are pickles), code (`.py`) and any other name.
Content that contradicts its name (a zip called `.json`) is refused too.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import IO

import yaml

from shipyard.errors import InvalidInput, PayloadTooLarge, ShipyardError, UnsupportedMedia
from shipyard.registry.names import safe_name

FORMATS = ("safetensors", "gguf", "onnx", "json", "yaml", "text", "tar", "zip")
CHUNK = 1024 * 1024
HEAD = 64 * 1024
PARSE_LIMIT = 64 * 1024 * 1024  # JSON and YAML are parsed whole
SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library's own limit
MAX_MEMBERS = 100_000
UNPACKED_RATIO = 100  # an archive may unpack to 100x its size (or PARSE_LIMIT): no bombs

_SUFFIXES = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".tar": "tar",
    ".tgz": "tar",
    ".tar.gz": "tar",
    ".zip": "zip",
    "": "text",
    **dict.fromkeys(
        (".txt", ".md", ".rst", ".csv", ".tsv", ".jsonl", ".jinja", ".j2", ".tmpl"), "text"
    ),
}
_PICKLES = {
    ".bin": "a .bin file (usually a PyTorch pickle)",
    ".pt": "a PyTorch .pt file (pickle)",
    ".pth": "a PyTorch .pth file (pickle)",
    ".pkl": "a pickle",
    ".pickle": "a pickle",
    ".ckpt": "a checkpoint .ckpt file (pickle)",
    ".joblib": "a joblib file (pickle)",
    ".dill": "a dill file (pickle)",
}
_MAGIC = {b"PK\x03\x04": "a zip archive", b"PK\x05\x06": "a zip archive"}
_MAGIC |= {b"\x1f\x8b": "gzip data", b"GGUF": "a GGUF file", b"\x93NUMPY": "a numpy array"}
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8}
_DTYPE_BITS |= {"I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32}
_DTYPE_BITS |= {"I64": 64, "U64": 64, "F64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def _refuse(name: str, why: str) -> UnsupportedMedia:
    return UnsupportedMedia(f"{name}: {why}")


def suffix_of(name: str) -> str:
    base = PurePosixPath(name).name.lower()
    return ".tar.gz" if base.endswith(".tar.gz") else PurePosixPath(base).suffix


def kind_of(name: str) -> str:
    """The format a name claims (from its extension), or UnsupportedMedia for a pickle
    or any name this module does not accept."""
    suffix = suffix_of(name)
    if suffix in _PICKLES:
        raise _refuse(name, f"{_PICKLES[suffix]} is refused: upload safetensors instead")
    if suffix in (".npy", ".npz"):
        raise _refuse(name, "numpy files are refused (object arrays are pickles)")
    if suffix not in _SUFFIXES:
        accepted = ", ".join(sorted(k for k in _SUFFIXES if k))
        raise _refuse(name, f"'{suffix}' files are not accepted (accepted: {accepted})")
    return _SUFFIXES[suffix]


def is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def check_format(name: str, content: bytes | IO[bytes]) -> str:
    """The format of an artifact file called `name` (a safe name) whose content is the
    bytes or a seekable binary file (read from its start, left open): one of `FORMATS`,
    or UnsupportedMedia saying why it is refused (InvalidInput for a bad member name)."""
    f = io.BytesIO(content) if isinstance(content, bytes | bytearray | memoryview) else content
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    return _check(name, f, size, nested=False)


def _check(name: str, f: IO[bytes], size: int, *, nested: bool) -> str:
    kind = kind_of(name)
    head = f.read(HEAD)
    f.seek(0)
    if kind != "safetensors" and is_pickle(head):  # safetensors checks its own header
        raise _refuse(name, "pickle data is refused (it can run code when loaded)")
    if nested and kind in ("tar", "zip"):
        raise _refuse(name, "archives inside archives are not accepted")
    _CHECKS[kind](name, f, size, head)
    return kind


def _not_other(name: str, head: bytes, kind: str) -> None:
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise _refuse(name, f"the content is {what}, not {kind}")


# Weights ---------------------------------------------------------------------------------


def _safetensors(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    def bad(why: str) -> UnsupportedMedia:
        if is_pickle(head):
            return _refuse(name, "pickle data is refused (it can run code when loaded)")
        return _refuse(name, f"not a valid safetensors file: {why}")

    if size < 8:
        raise bad("shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", f.read(8))
    if not 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, size - 8):
        raise bad(f"a header length of {length} bytes does not fit the file")
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (ValueError, RecursionError):
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise bad("__metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {key!r} needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or not _ints(shape) or not _ints(offsets, 2):
            raise bad(f"tensor {key!r} has a malformed dtype, shape or data_offsets")
        begin, end = offsets
        bits = _DTYPE_BITS.get(dtype)
        if begin > end or (bits is not None and (end - begin) * 8 != bits * math.prod(shape)):
            raise bad(f"tensor {key!r}: its offsets do not match its dtype and shape")
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        if begin != at:
            raise bad("tensor data overlaps or leaves gaps")
        at = end
    if at != size - 8 - length:
        raise bad("the tensors do not cover the data exactly")


def _ints(value: object, count: int | None = None) -> bool:
    return (
        isinstance(value, list)
        and (count is None or len(value) == count)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


def _gguf(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    if not head.startswith(b"GGUF"):
        raise _refuse(name, "not a GGUF file (no GGUF magic)")
    if size < 24:  # magic, version, tensor count, metadata count
        raise _refuse(name, "not a GGUF file: its header is truncated")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (1, 2, 3):
        raise _refuse(name, f"GGUF version {version} is not known")


_ONNX_REQUIRED = {1: 0, 7: 2}  # ModelProto.ir_version (varint), .graph (message)


def _onnx(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    """ONNX is a protobuf `ModelProto`: walk its top-level fields without decoding them
    (unknown fields are allowed, as protobuf allows), each tag and length well-formed and
    within the file, and require `ir_version` and `graph`."""
    seen: dict[int, int] = {}
    _not_other(name, head, "onnx")
    while f.tell() < size:
        tag = _varint(f)
        field, wire = (tag >> 3, tag & 7) if tag is not None else (0, -1)
        if field == 0 or wire not in (0, 1, 2, 5):
            raise _refuse(name, f"not an ONNX model: no protobuf field at byte {f.tell()}")
        if wire == 0:
            if _varint(f) is None:
                raise _refuse(name, "not an ONNX model: a truncated varint")
        else:
            length = {1: 8, 5: 4}.get(wire) or _varint(f)
            if length is None or f.tell() + length > size:
                raise _refuse(name, "not an ONNX model: a field runs past the end")
            f.seek(length, io.SEEK_CUR)
        seen.setdefault(field, wire)
    if any(seen.get(field) != wire for field, wire in _ONNX_REQUIRED.items()):
        raise _refuse(name, "not an ONNX model: no ir_version or no graph")


def _varint(f: IO[bytes]) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


# Text ------------------------------------------------------------------------------------


def _parsed_text(name: str, f: IO[bytes], size: int, head: bytes, kind: str) -> str:
    _not_other(name, head, kind)
    if size > PARSE_LIMIT:
        raise PayloadTooLarge(f"{name}: a {kind} file is checked whole, at most {PARSE_LIMIT}")
    data = f.read()
    if b"\x00" in data:
        raise _refuse(name, f"not {kind}: it contains NUL bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(name, f"not UTF-8 {kind} (byte {exc.start})") from None


def _json(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    text = _parsed_text(name, f, size, head, "json")
    try:
        json.loads(text)
    except RecursionError:
        raise _refuse(name, "not accepted json: nested too deeply") from None
    except ValueError as exc:
        raise _refuse(name, f"not valid json: {exc}") from None


def _yaml(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    text = _parsed_text(name, f, size, head, "yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for _ in yaml.load_all(text, Loader=loader):
            pass
    except RecursionError:
        raise _refuse(name, "not accepted yaml: nested too deeply") from None
    except yaml.YAMLError as exc:
        raise _refuse(name, f"not valid yaml: {str(exc)[:200]}") from None


def _text(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    _not_other(name, head, "text")
    decoder, at = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        while chunk := f.read(CHUNK):
            if b"\x00" in chunk:
                raise _refuse(name, "not text: it contains NUL bytes")
            decoder.decode(chunk)
            at += len(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _refuse(name, f"not UTF-8 text (near byte {at + exc.start})") from None


# Archives --------------------------------------------------------------------------------


class _Members:
    """What every archive's members share: names checked, unique (case-insensitively:
    they may land on such a filesystem), counted and their unpacked size capped."""

    def __init__(self, archive: str, size: int) -> None:
        self.archive, self.seen, self.total = archive, set[str](), 0
        self.limit = max(UNPACKED_RATIO * size, PARSE_LIMIT)

    def name(self, raw: str) -> str:
        if len(self.seen) >= MAX_MEMBERS:
            raise _refuse(self.archive, f"more than {MAX_MEMBERS} members")
        try:
            name = safe_name(raw[:-1] if raw.endswith("/") else raw)
        except InvalidInput as exc:
            raise InvalidInput(f"{self.archive}: member {exc.detail}", param="name") from None
        if name.casefold() in self.seen:
            raise _refuse(self.archive, f"the member {name!r} appears twice")
        self.seen.add(name.casefold())
        if PurePosixPath(name).name.lower() == "data.pkl" or suffix_of(name) in _PICKLES:
            raise _refuse(self.archive, f"a PyTorch checkpoint or pickle ({name}) is refused")
        return name

    def check(self, name: str, f: IO[bytes], size: int) -> None:
        self.total += size
        if self.total > self.limit:
            raise _refuse(self.archive, "unpacks to far more than its size")
        try:
            _check(name, f, size, nested=True)
        except ShipyardError as exc:
            raise type(exc)(f"{self.archive}: {exc.detail}", param=exc.param) from None


def _zip(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _refuse(name, "not a valid zip archive") from None
    members = _Members(name, size)
    with archive:
        infos = archive.infolist()
        for info in infos:  # names first: a checkpoint is named as one before reading
            members.name(info.orig_filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode) or (stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR)):
                raise _refuse(name, f"the member {info.orig_filename!r} is a link or device")
            if info.flag_bits & 0x1:
                raise _refuse(name, f"the member {info.orig_filename!r} is encrypted")
        for info in infos:
            if not info.is_dir():
                try:
                    with archive.open(info) as member:
                        members.check(info.filename, member, info.file_size)
                except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as exc:
                    raise _refuse(
                        name, f"the member {info.filename!r} is unreadable: {exc}"
                    ) from None


def _tar(name: str, f: IO[bytes], size: int, head: bytes) -> None:
    try:
        archive = tarfile.open(fileobj=f, mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError):
        raise _refuse(name, "not a valid tar archive") from None
    members = _Members(name, size)
    with archive:
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError):
                raise _refuse(name, "not a valid tar archive (a member is damaged)") from None
            if info is None:
                break
            raw = info.name[2:] if info.name.startswith("./") else info.name
            if raw in ("", "."):
                continue
            member = members.name(raw)
            if info.issym() or info.islnk():
                raise _refuse(name, f"the member {member!r} is a link ({info.linkname!r})")
            if info.isdir():
                continue
            if not info.isreg():
                raise _refuse(name, f"the member {member!r} is a device, fifo or special file")
            data = archive.extractfile(info)
            if data is None:
                raise _refuse(name, f"the member {member!r} is unreadable")
            members.check(member, data, info.size)


_CHECKS: dict[str, Callable[[str, IO[bytes], int, bytes], None]] = {
    "safetensors": _safetensors,
    "gguf": _gguf,
    "onnx": _onnx,
    "json": _json,
    "yaml": _yaml,
    "text": _text,
    "tar": _tar,
    "zip": _zip,
}
