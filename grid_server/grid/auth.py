"""Registration tokens and side-key checks (constant-time comparisons)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .errors import RequestError


def new_token() -> str:
    """A random token issued at registration (shown once, stored only as a hash)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token(stored_hash: str | None, token: str | None) -> None:
    """Raise 401 without a token and 403 with a wrong one."""
    if token is None:
        raise RequestError(
            "This registration requires its token: send 'Authorization: Bearer <token>'.", 401
        )
    if stored_hash is None or not hmac.compare_digest(stored_hash, token_hash(token)):
        raise RequestError("The token does not belong to this registration.", 403)


def side_key_matches(stored: str | None, given: str | None) -> bool:
    return (
        stored is not None
        and given is not None
        and hmac.compare_digest(stored.encode(), given.encode())
    )


def check_side_key(stored: str | None, given: str | None) -> None:
    """Raise 401 without the side key and 403 with a wrong one."""
    if given is None:
        raise RequestError("The registration's side key is required to remove it.", 401)
    if not side_key_matches(stored, given):
        raise RequestError("The side key does not match the registration.", 403)
