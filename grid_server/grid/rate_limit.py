"""Limits on what one client address may make the grid do, counted before the work.

Each address (an IPv6 client by its /64, which one household usually holds) has a
token bucket: ``burst`` attempts at once, refilled at ``per_minute``. An attempt is
taken from the bucket in the event loop's thread before any awaited work, so
concurrent requests cannot slip past the count.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

# Addresses remembered at once; beyond that the quietest half is forgotten (a scan of
# many addresses is then bounded by whatever else limits it, not by memory).
MAX_TRACKED: Final = 10_000


def address_key(address: str | None) -> str:
    """Whom an address stands for: itself (IPv4, IPv4-mapped IPv6), its /64 (IPv6)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return f"other:{address}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


@dataclass
class TokenBucket:
    """``capacity`` attempts at once, refilled at ``per_second``."""

    capacity: float
    per_second: float
    tokens: float
    at: float

    @classmethod
    def full(cls, capacity: float, per_second: float, now: float) -> TokenBucket:
        return cls(capacity, per_second, capacity, now)

    def take(self, now: float) -> float:
        """Take one token: 0 if there was one, else the seconds until there is."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1:
            return (1 - self.tokens) / self.per_second
        self.tokens -= 1
        return 0.0

    def give_back(self) -> None:
        self.tokens = min(self.capacity, self.tokens + 1)


class AddressRateLimit:
    """A token bucket per client address."""

    def __init__(
        self,
        *,
        burst: int,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("a rate limit needs a burst of at least 1 and a positive rate")
        self._burst = float(burst)
        self._per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, address: str | None) -> float:
        """Count one attempt from ``address``: 0 if it may go on, else seconds to wait."""
        now = self._clock()
        key = address_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self._burst, self._per_second, now)
            self._bound()
        return bucket.take(now)

    def _bound(self) -> None:
        if len(self._buckets) <= MAX_TRACKED:
            return
        for key in sorted(self._buckets, key=lambda k: self._buckets[k].at)[: MAX_TRACKED // 2]:
            del self._buckets[key]
