"""Secrets of the entities: seeds, side keys, registration ids, API tokens.

Everything comes from the operating system's CSPRNG (``secrets``); a seed is
the key to a MAM channel or a wallet, so nothing weaker may produce one.
"""

from __future__ import annotations

import secrets

from .protocol.trinary import is_trytes, random_trytes


def generate_seed() -> str:
    """Return a random 81-tryte seed (3^243 possibilities, ~385 bits)."""
    return random_trytes()


def generate_side_key() -> str:
    """Return a random 81-tryte side key for a restricted MAM channel."""
    return random_trytes()


def generate_registration_id() -> str:
    """Return a registration id (the blueprint wants at least 8 characters)."""
    return secrets.token_hex(16)


def generate_api_token() -> str:
    """Return the unguessable path segment of a producer's registration API."""
    return secrets.token_urlsafe(24)


def is_trytes_81(value: object) -> bool:
    """Tell whether ``value`` is exactly 81 trytes (a seed, root or side key)."""
    return is_trytes(value, 81)
