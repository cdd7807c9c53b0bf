"""Passwords (argon2) and API key material (random, stored as SHA-256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shipyard.errors import InvalidInput

KEY_PREFIX = "sy"
_HASHER = PasswordHasher()
_COMMON = {"password", "admin", "changeme", "shipyard", "letmein", "qwerty", "123456"}


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str | None) -> str:
    """Return the password if acceptable, else raise InvalidInput saying why."""
    if not password:
        raise InvalidInput("password must not be empty")
    if len(password) < 12:
        raise InvalidInput("password must be at least 12 characters long")
    lowered = password.lower()
    if any(word in lowered for word in _COMMON) or len(set(password)) < 6:
        raise InvalidInput("password is too easy to guess")
    return password


def generate_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, key id, sha256 of the secret part)."""
    kid = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}-{kid}-{secret}", kid, sha256(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    parts = key.split("-", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1], parts[2]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
