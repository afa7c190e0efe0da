"""Neighbours prove who they are: every request and every answer between them is signed.

Two neighbours share a secret (configured on both sides). A request carries
``X-P2P-Energy-Peer-Auth: v1 key=<id>, time=<ms>, nonce=<hex>, signature=<hex>``,
an HMAC-SHA256 over the method, path, time, nonce and the body's SHA-256; ``key``
names the secret without revealing it. The receiver accepts it within the replay
window and only once per nonce, and signs its answer (status and body) together
with that nonce in ``X-P2P-Energy-Peer-Signature``, so an answer can neither be
forged nor replayed to another request. A request without the header is an
ordinary client's; one whose header does not verify is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

AUTH_HEADER: Final = "X-P2P-Energy-Peer-Auth"
RESPONSE_SIGNATURE_HEADER: Final = "X-P2P-Energy-Peer-Signature"
# The sender's own URL: which of the neighbours sharing a secret it is (not a credential).
PEER_HEADER: Final = "X-P2P-Energy-Peer"
_SCHEME: Final = "v1"
_AUTH_PATTERN: Final = re.compile(
    r"v1 key=(?P<key>[0-9a-f]{16}), time=(?P<time>\d{1,15}), "
    r"nonce=(?P<nonce>[0-9a-f]{32}), signature=(?P<signature>[0-9a-f]{64})"
)
_SIGNATURE_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
# Verified nonces remembered per node; only requests signed with a known secret add one.
_MAX_NONCES: Final = 200_000


class PeerAuthError(Exception):
    """A neighbour's signature, time or nonce does not verify."""


def generate_secret() -> str:
    """A new peering secret (or API token): 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def key_id(secret: str) -> str:
    """A short name of ``secret`` that does not reveal it."""
    return hmac.new(secret.encode(), b"p2p-energy peer key", hashlib.sha256).hexdigest()[:16]


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _request_mac(secret: str, method: str, path: str, time_ms: int, nonce: str, body: bytes) -> str:
    message = "\n".join(
        ("request", _SCHEME, method.upper(), path, str(time_ms), nonce, _digest(body))
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _response_mac(secret: str, nonce: str, status: int, body: bytes) -> str:
    message = "\n".join(("response", _SCHEME, nonce, str(status), _digest(body)))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The headers of one outgoing request and what its answer must be signed with."""

    headers: dict[str, str]
    secret: str
    nonce: str

    def answer_is_genuine(self, status: int, body: bytes, signature: str | None) -> bool:
        if signature is None or not _SIGNATURE_PATTERN.fullmatch(signature):
            return False
        expected = _response_mac(self.secret, self.nonce, status, body)
        return hmac.compare_digest(expected, signature)


def sign_request(
    secret: str, method: str, path: str, body: bytes, *, sender: str, now_ms: int | None = None
) -> SignedRequest:
    """Sign a request from the node at ``sender`` (its own URL) to a neighbour."""
    time_ms = int(time.time() * 1000) if now_ms is None else now_ms
    nonce = secrets.token_hex(16)
    signature = _request_mac(secret, method, path, time_ms, nonce, body)
    header = f"{_SCHEME} key={key_id(secret)}, time={time_ms}, nonce={nonce}, signature={signature}"
    return SignedRequest({AUTH_HEADER: header, PEER_HEADER: sender}, secret, nonce)


@dataclass(frozen=True, slots=True)
class VerifiedPeer:
    """A request that verified: the neighbour it came from and how to sign the answer."""

    url: str
    secret: str
    nonce: str

    def sign_answer(self, status: int, body: bytes) -> str:
        return _response_mac(self.secret, self.nonce, status, body)


class PeerVerifier:
    """Checks neighbours' signed requests against the secrets this node shares with them."""

    def __init__(self, replay_window_seconds: float) -> None:
        self._window_ms = int(replay_window_seconds * 1000)
        # key id -> (secret, neighbour URLs sharing it)
        self._keys: dict[str, tuple[str, list[str]]] = {}
        # nonce -> time it may be forgotten (ms), oldest first
        self._nonces: OrderedDict[str, int] = OrderedDict()

    def set_neighbors(self, secrets_by_url: Mapping[str, str]) -> None:
        """The neighbours and their secrets (called whenever the neighbour list changes)."""
        keys: dict[str, tuple[str, list[str]]] = {}
        for url, secret in sorted(secrets_by_url.items()):
            keys.setdefault(key_id(secret), (secret, []))[1].append(url)
        self._keys = keys

    def verify(
        self,
        header: str,
        *,
        method: str,
        path: str,
        body: bytes,
        claimed: str | None,
        now_ms: int | None = None,
    ) -> VerifiedPeer:
        """The neighbour that signed ``header``, or PeerAuthError saying what is wrong."""
        match = _AUTH_PATTERN.fullmatch(header.strip())
        if match is None:
            raise PeerAuthError(f"{AUTH_HEADER} is malformed")
        known = self._keys.get(match["key"])
        if known is None:
            raise PeerAuthError(
                "the request is signed with a secret this node shares with none of its neighbours"
            )
        secret, urls = known
        time_ms = int(match["time"])
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now - time_ms) > self._window_ms:
            raise PeerAuthError(
                "the signed request is too old or from the future (check both clocks)"
            )
        nonce = match["nonce"]
        expected = _request_mac(secret, method, path, time_ms, nonce, body)
        if not hmac.compare_digest(expected, match["signature"]):
            raise PeerAuthError("the request's signature does not match")
        self._remember(nonce, now)
        return VerifiedPeer(claimed if claimed in urls else urls[0], secret, nonce)

    def _remember(self, nonce: str, now_ms: int) -> None:
        while self._nonces:
            oldest, expires = next(iter(self._nonces.items()))
            if expires > now_ms and len(self._nonces) < _MAX_NONCES:
                break
            del self._nonces[oldest]
        if nonce in self._nonces:
            raise PeerAuthError("the signed request was replayed (its nonce was used already)")
        # Kept for twice the window: a request is accepted up to one window either side.
        self._nonces[nonce] = now_ms + 2 * self._window_ms


def neighbor_secrets(
    urls: Iterable[str], own_secrets: Mapping[str, str], default: str
) -> dict[str, str]:
    """Each neighbour's secret: its own if configured, else the node's peering secret."""
    return {url: own_secrets.get(url, default) for url in urls}
