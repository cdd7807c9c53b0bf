"""The artifact store on any S3-compatible server (AWS S3, SeaweedFS, MinIO, Ceph RGW),
through boto3 (the optional extra `shipyard[s3]`).

An upload is spooled and checked locally first (`artifacts.receive`), then sent with
one PUT (or a multipart upload for large files): S3 makes an object visible only once
its upload completed, so a failed upload leaves nothing behind. Keys are
`<prefix>sha256/ab/cd/<hex>`. Path-style addressing and checksums only when required
keep it working with servers that are not AWS.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError, NotFound, ShipyardError, Unavailable
from shipyard.registry.artifacts import (
    CHUNK,
    ArtifactRef,
    Blob,
    Source,
    blob_key,
    cap,
    receive,
    safe_name,
    verify_blob,
)

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Artifacts:
    """Blobs as objects in `bucket` (under `prefix`, "" or a safe name); uploads are
    spooled in `spool_dir` (the system's temporary folder by default). Building one
    makes no request; `ensure_bucket` creates the bucket when it is missing."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        prefix: str = "",
        max_size: int | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            need = "the S3 artifact store needs boto3: pip install 'shipyard[s3]'"
            raise ConfigError(need) from None
        self.bucket, self.max_size = bucket, max_size
        self.prefix = safe_name(prefix.rstrip("/"), param="prefix") + "/" if prefix else ""
        self.spool_dir = spool_dir
        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )

    def _key(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    def ensure_bucket(self) -> None:
        try:
            with _errors(f"the bucket {self.bucket}"):
                self._client.head_bucket(Bucket=self.bucket)
        except NotFound:
            with _errors(f"the bucket {self.bucket}"):
                self._client.create_bucket(Bucket=self.bucket)

    def put(self, source: Source, *, name: str, max_size: int | None = None) -> ArtifactRef:
        safe_name(name)
        spool = self.spool_dir or Path(tempfile.gettempdir())
        tmp, ref = receive(source, name=name, max_size=cap(self.max_size, max_size), spool=spool)
        try:
            if not self.exists(ref.sha256):
                with _errors(f"artifact {ref.sha256}"):
                    self._client.upload_file(
                        str(tmp),
                        self.bucket,
                        self._key(ref.sha256),
                        ExtraArgs={"ContentType": "application/octet-stream"},
                    )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return ref

    def open(self, sha256: str) -> Blob:
        key = self._key(sha256)
        with _errors(f"artifact {sha256}"):
            reply = self._client.get_object(Bucket=self.bucket, Key=key)
        body = reply["Body"]
        return Blob(sha256, int(reply["ContentLength"]), body.iter_chunks(CHUNK), body.close)

    def exists(self, sha256: str) -> bool:
        key = self._key(sha256)
        try:
            with _errors(f"artifact {sha256}"):
                self._client.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        return True

    def verify(self, sha256: str) -> bool:
        return verify_blob(self.open(sha256))

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        with _errors(f"artifact {sha256}"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        return True

    def blobs(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2")
        with _errors("the bucket"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + "sha256/"):
                for item in page.get("Contents", []):
                    name = str(item["Key"]).rsplit("/", 1)[-1]
                    with contextlib.suppress(ShipyardError):
                        if self._key(name) == item["Key"]:
                            yield name

    def close(self) -> None:
        self._client.close()


def _code(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code", ""))


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """botocore's failures as Shipyard's: a missing object is NotFound, an unreachable
    server Unavailable, refused credentials or anything else a server error."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _MISSING:
            raise NotFound(f"{what} not found") from None
        if code in _REFUSED:
            raise ShipyardError("the S3 artifact store refused Shipyard's credentials") from None
        raise ShipyardError(f"the S3 artifact store failed ({code or 'unknown error'})") from None
    except (ConnectionError, ReadTimeoutError):
        raise Unavailable("the S3 artifact store is unreachable", retry_after=5) from None
    except (BotoCoreError, Boto3Error) as exc:  # Boto3Error: upload_file's own failures
        raise ShipyardError(f"the S3 artifact store failed: {str(exc)[:300]}") from None
