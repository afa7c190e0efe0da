"""Errors the grid's services raise for requests they cannot serve."""

from __future__ import annotations


class RequestError(Exception):
    """A request that cannot be served, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
