"""Errors the grid's services raise for requests they cannot serve."""

from __future__ import annotations


class RequestError(Exception):
    """A request that cannot be served, with the HTTP status that says why.

    Arguments in the order of the node's ``CommandError`` and the clients' ``GridApiError``.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
