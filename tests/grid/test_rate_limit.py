"""The registration limit per client address: a burst, then a steady rate."""

from __future__ import annotations

import pytest

from grid_server.grid.config import GridConfig
from grid_server.grid.rate_limit import MAX_TRACKED, AddressRateLimit
from grid_server.grid.registrations import RegistrationLimits, RegistrationRateError


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    limit = AddressRateLimit(burst=3, per_minute=6, clock=clock)  # one every 10 s
    assert [limit.take("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.take("10.0.0.1") == pytest.approx(10.0)
    # A refused attempt costs nothing: the wait does not grow by asking again.
    assert limit.take("10.0.0.1") == pytest.approx(10.0)
    clock.now += 4.0
    assert limit.take("10.0.0.1") == pytest.approx(6.0)
    clock.now += 6.0
    assert limit.take("10.0.0.1") == 0.0
    # Another address has its own burst; the same /64 is the same client.
    assert limit.take("10.0.0.2") == 0.0
    assert [limit.take(f"2001:db8::{n}") for n in range(1, 5)][-1] > 0
    # Refilled, never beyond the burst.
    clock.now += 3600.0
    assert [limit.take("10.0.0.1") for _ in range(4)][-1] > 0


def test_memory_stays_bounded_under_a_scan_of_addresses() -> None:
    clock = Clock()
    limit = AddressRateLimit(burst=1, per_minute=1, clock=clock)
    for n in range(MAX_TRACKED + 10):
        clock.now += 0.001
        limit.take(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(limit._buckets) <= MAX_TRACKED


def test_limits_from_the_configuration() -> None:
    limits = RegistrationLimits.from_config(GridConfig())
    assert limits.per_address is not None
    assert limits.quota == 100_000
    assert (
        RegistrationLimits.from_config(GridConfig(registrations_per_minute=0)).per_address is None
    )
    with pytest.raises(ValueError, match="burst"):
        AddressRateLimit(burst=0, per_minute=1)
    # The wait is told in whole seconds, at least one.
    assert RegistrationRateError(0.2).retry_after == 1
    assert RegistrationRateError(6.01).retry_after == 7
