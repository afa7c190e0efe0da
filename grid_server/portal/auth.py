"""Operator passwords for the portal: scrypt, stored only hashed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final

# scrypt cost: 2**14 x 8 x 1 needs 16 MiB and ~50 ms, fine for an operator login.
_SCRYPT_N: Final = 2**14
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_KEY_BYTES: Final = 32
_HASH_PATTERN: Final = re.compile(
    r"scrypt\$(?P<n>\d+)\$(?P<r>\d+)\$(?P<p>\d+)\$(?P<salt>[A-Za-z0-9_-]+=*)\$(?P<key>[A-Za-z0-9_-]+=*)"
)
MIN_PASSWORD_LENGTH: Final = 8
MAX_PASSWORD_LENGTH: Final = 1024


class PasswordError(ValueError):
    """A password or stored password hash is unusable; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * 1024 * 1024,
        dklen=_KEY_BYTES,
    )


def check_password_strength(password: str) -> None:
    """Reject passwords an operator should not protect a grid with."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the portal password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(
            f"the portal password may have at most {MAX_PASSWORD_LENGTH} characters"
        )


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$key`` for ``password`` with a fresh random salt."""
    check_password_strength(password)
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def validate_password_hash(encoded: str) -> str:
    """Return ``encoded`` if it is a hash made by :func:`hash_password`, else raise."""
    match = _HASH_PATTERN.fullmatch(encoded)
    if match is None:
        raise PasswordError("password_hash must look like scrypt$N$r$p$salt$key")
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordError("password_hash has unusable scrypt parameters")
    return encoded


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time comparison)."""
    match = _HASH_PATTERN.fullmatch(validate_password_hash(encoded))
    if match is None:  # pragma: no cover - validate_password_hash already checked
        return False
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    salt = base64.urlsafe_b64decode(match["salt"])
    expected = base64.urlsafe_b64decode(match["key"])
    actual = _scrypt(password, salt, int(match["n"]), int(match["r"]), int(match["p"]))
    return hmac.compare_digest(actual, expected)
