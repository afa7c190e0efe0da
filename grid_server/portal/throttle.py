"""Slows down password guessing at the portal's sign-in without locking the operator out.

Every attempt is counted when it *starts*, before the password is checked, in the
event loop's thread, so concurrent guesses cannot slip past the count. Three limits:

* per client address (IPv6 by /64): a few free attempts, then each next one waits
  twice as long as the one before (1 s, 2 s, 4 s ... up to ``max_delay``);
* one budget for the whole grid: at most ``budget`` attempts per ``budget_window``
  from addresses together, so many addresses cannot guess in parallel;
* a browser that signed in before carries a signed *device* cookie: its attempts
  are limited per device only, so an attacker exhausting the other limits does not
  lock the operator out. Home Assistant ingress needs no password at all.

A successful sign-in clears its address's and device's counts and gives its budget
back. The state is per grid process (each process has its own limits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..grid.rate_limit import MAX_TRACKED, TokenBucket, address_key

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class _Count:
    attempts: int = 0
    next_allowed: float = 0.0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt may not be made now, and for how long."""

    wait_seconds: float
    whole_grid: bool
    """The grid's budget, not this address's count, ran out."""


class LoginThrottle:
    def __init__(
        self,
        *,
        free_attempts: int = 5,
        max_delay: float = 900.0,
        budget: int = 20,
        budget_window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_attempts
        self._max_delay = max_delay
        self._clock = clock
        self._counts: dict[str, _Count] = {}
        self._budget = TokenBucket.full(budget, budget / budget_window, clock())

    def begin(self, address: str | None, device: str | None) -> Refusal | None:
        """Count an attempt that is about to check a password; a refusal says to wait."""
        now = self._clock()
        key = f"device:{device}" if device is not None else address_key(address)
        count = self._counts.get(key)
        if count is not None and now < count.next_allowed:
            return Refusal(count.next_allowed - now, whole_grid=False)
        if device is None:
            wait = self._budget.take(now)
            if wait > 0:
                return Refusal(wait, whole_grid=True)
        if count is None:
            count = self._counts[key] = _Count()
            self._bound()
        count.attempts += 1
        count.last = now
        if count.attempts >= self._free:
            count.next_allowed = now + min(self._max_delay, 2.0 ** (count.attempts - self._free))
        return None

    def succeeded(self, address: str | None, device: str | None) -> None:
        """The password was right: forget this address's and device's failures."""
        self._counts.pop(address_key(address), None)
        if device is not None:
            self._counts.pop(f"device:{device}", None)
        else:
            self._budget.give_back()

    def _bound(self) -> None:
        if len(self._counts) <= MAX_TRACKED:
            return
        # Forget the longest-quiet half; the grid's budget still limits their guesses.
        for key in sorted(self._counts, key=lambda k: self._counts[k].last)[: MAX_TRACKED // 2]:
            del self._counts[key]
