"""Exception types raised by the protocol library.

Every error is a ``ProtocolError`` (a ``ValueError``), so callers can catch the
whole family or a specific kind.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Base class of every error raised on bad protocol input."""


class InvalidTritsError(ProtocolError):
    """A trit sequence holds values outside -1, 0, 1 or has a wrong length."""


class InvalidTrytesError(ProtocolError):
    """A tryte string holds characters outside ``9A-Z`` or has a wrong length."""


class InvalidAsciiError(ProtocolError):
    """Trytes do not decode to text (odd length or a code point above 255)."""


class InvalidAddressError(ProtocolError):
    """An address is malformed or its checksum does not match."""


class InvalidTransactionError(ProtocolError):
    """A transaction's trytes or fields are malformed."""


class InvalidBundleError(ProtocolError):
    """A bundle is incomplete, inconsistent or has a wrong bundle hash."""


class InvalidSignatureError(InvalidBundleError):
    """A signature does not verify against its address."""


class ProofOfWorkError(ProtocolError):
    """Proof of work is missing, insufficient or was asked with bad parameters."""


class PowInterruptedError(ProofOfWorkError):
    """A nonce search was stopped on request before it found a nonce."""


class MamError(ProtocolError):
    """A MAM channel, message or payload is invalid."""


class MamPayloadError(MamError):
    """A MAM payload is corrupt, truncated or not a MAM message."""


class MamAuthenticationError(MamError):
    """A MAM message does not authenticate: wrong root, side key or signature."""


class PayloadError(ProtocolError):
    """A MAM payload's JSON is not one of the messages its channel may carry."""


class GridApiError(ProtocolError):
    """The grid (or a producer's registration API) refused a request.

    ``status`` is the HTTP status (0 when no response arrived) and ``message``
    the server's explanation.
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GridUnavailableError(GridApiError):
    """The grid (or producer) could not be reached or answered garbage."""


class NodeError(ProtocolError):
    """A call to an IRI node failed."""


class IriApiError(NodeError):
    """The node answered a command with an error (HTTP 4xx/5xx with ``error``/``exception``)."""

    def __init__(self, command: str, status: int, message: str) -> None:
        super().__init__(f"{command} failed on the node (HTTP {status}): {message}")
        self.command = command
        self.status = status
        self.message = message


class NodeUnavailableError(NodeError):
    """The node could not be reached, timed out or did not answer with the IRI API."""


class InsufficientBalanceError(ProtocolError):
    """The seed's addresses do not hold enough confirmed IOTA for a transfer."""
