"""Errors the node's command API turns into HTTP answers."""

from __future__ import annotations


class CommandError(Exception):
    """A request the node refuses: bad input, over a limit, or not possible now.

    Answered as ``{"error": message}`` with ``status`` (400 unless stated), as IRI did,
    and ``Retry-After: retry_after`` (seconds) when the request may be sent again later.
    """

    def __init__(self, message: str, status: int = 400, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
