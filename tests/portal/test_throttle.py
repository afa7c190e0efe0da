"""The sign-in throttle: counted before the check, per address, per grid, per device."""

from __future__ import annotations

from grid_server.grid.rate_limit import address_key
from grid_server.portal.throttle import LoginThrottle, Refusal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_twice_as_long_after_each_attempt_beyond_the_free_ones() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_attempts=3, budget=1000, clock=clock)
    # Counted when they start: three attempts in flight at once use up the free ones.
    assert [throttle.begin("10.0.0.1", None) for _ in range(3)] == [None] * 3
    assert throttle.begin("10.0.0.1", None) == Refusal(1.0, whole_grid=False)
    clock.now += 1
    assert throttle.begin("10.0.0.1", None) is None
    assert throttle.begin("10.0.0.1", None) == Refusal(2.0, whole_grid=False)
    clock.now += 2
    assert throttle.begin("10.0.0.1", None) is None
    assert throttle.begin("10.0.0.1", None) == Refusal(4.0, whole_grid=False)
    # Another address is not held back by this one.
    assert throttle.begin("10.0.0.2", None) is None
    # The right password clears the count.
    throttle.succeeded("10.0.0.1", None)
    assert throttle.begin("10.0.0.1", None) is None


def test_the_longest_wait_is_capped() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_attempts=1, max_delay=60, budget=1000, clock=clock)
    for _ in range(20):
        assert throttle.begin("10.0.0.1", None) is None
        clock.now += 60
    refusal = throttle.begin("10.0.0.1", None)
    assert refusal is None or refusal.wait_seconds <= 60


def test_many_addresses_share_one_budget_and_devices_that_signed_in_do_not() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_attempts=5, budget=20, budget_window=600, clock=clock)
    tried = sum(throttle.begin(f"10.0.1.{n}", None) is None for n in range(20) for _ in range(5))
    assert tried == 20
    refusal = throttle.begin("10.0.2.1", None)
    assert refusal == Refusal(30.0, whole_grid=True)
    # The operator's browser, which signed in before, is not held back.
    assert throttle.begin("10.0.1.1", "operator-laptop") is None
    # The budget comes back over the window: one attempt every 30 s.
    clock.now += 30
    assert throttle.begin("10.0.2.1", None) is None
    assert throttle.begin("10.0.2.2", None) is not None
    # A success gives its attempt back.
    throttle.succeeded("10.0.2.1", None)
    assert throttle.begin("10.0.2.2", None) is None


def test_a_device_has_its_own_count() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_attempts=2, budget=1, clock=clock)
    assert throttle.begin("10.0.0.1", "laptop") is None
    assert throttle.begin("10.0.0.1", "laptop") is None
    assert throttle.begin("10.0.0.1", "laptop") == Refusal(1.0, whole_grid=False)
    assert throttle.begin("10.0.0.1", None) is None  # the address and budget are apart


def test_ipv6_addresses_count_by_their_64_prefix() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key(None) == "other:None"
