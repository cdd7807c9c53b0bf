"""Provider credentials at rest: Fernet (AES-128-CBC + HMAC) with a key from
SHIPYARD_SECRET_KEY or a 0600 key file in the data dir, created on first use."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from shipyard.errors import ConfigError


class SecretBox:
    def __init__(self, secret: str | None, key_file: Path) -> None:
        if secret:
            material = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        else:
            material = _load_or_create(key_file)
        self._fernet = Fernet(material)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored provider credential cannot be decrypted: the secret key changed"
            ) from None


def _load_or_create(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key
