"""Telling a database that is away from a fault in the work, and waiting for it.

The node and the grid both answer 503 (not 500) and retry when their database server
is restarting or unreachable, and wait for it at start instead of exiting. SQLite
reports a missing table or a syntax error as ``OperationalError`` too; those are
faults in the code or the file and must not be hidden behind "try again later".
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Final, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# SQLite's OperationalError texts that mean "not now" rather than "never".
_SQLITE_TRANSIENT: Final = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
)
FIRST_RETRY_SECONDS: Final = 0.5
LONGEST_RETRY_SECONDS: Final = 5.0


class DatabaseUnavailableError(RuntimeError):
    """The database stayed unavailable for as long as the service would wait."""


def database_unavailable(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) means the database server is
    away: restarting, down, unreachable, connection lost. The transaction was rolled
    back, so the work may simply be retried; worth a 503, not a 500."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OperationalError):
            if isinstance(current.orig, sqlite3.OperationalError):
                text = str(current.orig).lower()
                return any(marker in text for marker in _SQLITE_TRANSIENT)
            return True
        current = current.__cause__
    return False


async def wait_for_database(
    operation: Callable[[], Awaitable[T]],
    *,
    purpose: str,
    wait_seconds: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation``, retrying while the database is unavailable, for up to
    ``wait_seconds`` (0: no retry). Other errors are raised as they are; a database
    still unavailable at the end raises :class:`DatabaseUnavailableError`."""
    deadline = monotonic() + wait_seconds
    delay = FIRST_RETRY_SECONDS
    attempt = 1
    while True:
        try:
            return await operation()
        except Exception as err:
            if not database_unavailable(err):
                raise
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise DatabaseUnavailableError(
                    f"{purpose}: the database is unavailable"
                    f"{f' after waiting {wait_seconds:g} s' if wait_seconds > 0 else ''}"
                    f": {_first_line(err)}"
                ) from err
            pause = min(delay, remaining)
            _LOGGER.warning(
                "%s: the database is unavailable (attempt %d, %s); retrying in %.1f s",
                purpose,
                attempt,
                _first_line(err),
                pause,
            )
            await sleep(pause)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)
            attempt += 1


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
