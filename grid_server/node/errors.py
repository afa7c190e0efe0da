"""Errors the node's command API turns into HTTP answers."""

from __future__ import annotations


class CommandError(Exception):
    """A request the node refuses: bad input, over a limit, or not possible now.

    Answered as ``{"error": message}`` with ``status`` (400 unless stated), as IRI did.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
