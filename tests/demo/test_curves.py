"""The simulator's solar and load models."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from grid_server.simulator.curves import (
    CloudCover,
    CurveMeter,
    Household,
    SimulatedClock,
    SimulationError,
    SolarPanel,
    day_length_hours,
    load_shape,
    solar_power,
    sun_elevation,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MIDSUMMER = datetime(2026, 6, 21)
MIDWINTER = datetime(2026, 12, 21)
WALL = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def integrate_kwh(power_kw: Callable[[datetime], float], start: datetime, end: datetime) -> float:
    """kWh of ``power_kw`` over simulated ``[start, end]``, as a meter counts them."""
    meter = CurveMeter(power_kw, SimulatedClock(start, WALL, speed=1.0), WALL)
    return meter.total_kwh(WALL + (end - start))


def test_day_length_follows_the_seasons() -> None:
    # Munich (48° N): about 16 h in June, 8.3 h in December, 12 h at the equinox.
    assert day_length_hours(172, 48.0) == pytest.approx(16.0, abs=0.3)
    assert day_length_hours(355, 48.0) == pytest.approx(8.3, abs=0.3)
    assert day_length_hours(80, 48.0) == pytest.approx(12.0, abs=0.2)
    assert day_length_hours(172, 0.0) == pytest.approx(12.0, abs=0.01)
    assert day_length_hours(172, 70.0) == 24.0
    assert day_length_hours(355, 70.0) == 0.0


def test_sun_is_highest_at_noon_and_down_at_night() -> None:
    noon = sun_elevation(MIDSUMMER.replace(hour=12), 48.0)
    # 90° - 48° + 23.44° = 65.44° elevation.
    assert noon == pytest.approx(math.sin(math.radians(65.44)), abs=0.002)
    assert sun_elevation(MIDSUMMER.replace(hour=9), 48.0) < noon
    assert sun_elevation(MIDSUMMER.replace(hour=0), 48.0) < 0


def test_solar_output_is_a_daytime_bell() -> None:
    panel = SolarPanel(peak_kw=5.0)
    hours = [panel.clear_sky_kw(MIDSUMMER + timedelta(hours=h)) for h in range(24)]
    assert hours[0] == hours[2] == hours[23] == 0.0
    assert max(hours) == hours[12]
    assert hours[12] <= 5.0
    # Symmetric around solar noon.
    assert hours[9] == pytest.approx(hours[15], rel=1e-9)
    summer = integrate_kwh(panel.clear_sky_kw, MIDSUMMER, MIDSUMMER + timedelta(days=1))
    winter = integrate_kwh(panel.clear_sky_kw, MIDWINTER, MIDWINTER + timedelta(days=1))
    # A 5 kWp array yields roughly 30-40 kWh on a clear June day, a fraction in December.
    assert 28 < summer < 42
    assert winter < summer / 3


def test_load_profile_has_morning_and_evening_peaks() -> None:
    shape = [load_shape(h) for h in range(24)]
    assert shape.index(max(shape)) in (19, 20)
    assert shape[7] > shape[3] * 2
    assert shape[3] < shape[12] < shape[19]
    home = Household(daily_kwh=10.0)
    day = integrate_kwh(home.mean_kw, MIDSUMMER, MIDSUMMER + timedelta(days=1))
    assert day == pytest.approx(10.0, rel=0.01)
    early = Household(daily_kwh=10.0, routine_shift_hours=-1.0)
    assert early.mean_kw(MIDSUMMER.replace(hour=18, minute=30)) == pytest.approx(
        home.mean_kw(MIDSUMMER.replace(hour=19, minute=30))
    )


def test_meter_is_exact_for_constant_power_and_reads_the_same_again() -> None:
    assert integrate_kwh(lambda _t: 2.0, MIDSUMMER, MIDSUMMER + timedelta(minutes=90)) == (
        pytest.approx(3.0)
    )
    assert integrate_kwh(lambda _t: 2.0, MIDSUMMER, MIDSUMMER) == 0.0
    # A fast clock: 180 simulated seconds per second; zero before the origin.
    clock = SimulatedClock.starting_at_hour(11.0, speed=180.0, now=WALL)
    power = solar_power([SolarPanel(peak_kw=4.0)], CloudCover(random.Random(5), 0.7))
    meter = CurveMeter(power, clock, WALL)
    assert meter.total_kwh(WALL - timedelta(seconds=5)) == 0.0
    instants = [WALL + timedelta(seconds=s / 3) for s in range(1, 200)]
    totals = [meter.total_kwh(when) for when in instants]
    assert totals == sorted(totals)
    assert totals[-1] > 0
    # Read again out of order by a meter built afresh (a restart): the same totals.
    again = CurveMeter(power, clock, WALL)
    assert [again.total_kwh(when) for when in reversed(instants)] == totals[::-1]
    reading = meter.read(instants[-1])
    assert (reading.energy_kwh, reading.time) == (totals[-1], instants[-1])


def test_cloud_cover_stays_in_range_and_repeats_with_a_seed() -> None:
    first = CloudCover(random.Random(7), clearness=0.6)
    second = CloudCover(random.Random(7), clearness=0.6)
    instants = [MIDSUMMER + timedelta(minutes=30 * step) for step in range(500)]
    levels = [first.level_at(when) for when in instants]
    assert levels == [second.level_at(when) for when in instants]
    assert all(0.15 <= level <= 1.0 for level in levels)
    assert sum(levels) / len(levels) == pytest.approx(0.6, abs=0.1)
    assert len(set(levels)) > 100
    assert CloudCover(random.Random(8), clearness=0.6).level_at(instants[3]) != levels[3]


def test_simulated_clock_runs_faster() -> None:
    now = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    clock = SimulatedClock.starting_at_hour(6.0, speed=180.0, now=now)
    assert clock.simulated(now) == datetime(2026, 11, 27, 6, 0)
    assert clock.simulated(now + timedelta(seconds=10)) == datetime(2026, 11, 27, 6, 30)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SolarPanel(peak_kw=0), "peak_kw"),
        (lambda: SolarPanel(peak_kw=1, latitude_deg=80), "latitude_deg"),
        (lambda: Household(daily_kwh=-1), "daily_kwh"),
        (lambda: Household(daily_kwh=5, routine_shift_hours=5), "routine_shift_hours"),
        (lambda: CloudCover(random.Random(1), clearness=0.1), "clearness"),
        (lambda: SimulatedClock(MIDSUMMER, MIDSUMMER, speed=0.5), "speed"),
    ],
)
def test_bad_parameters_are_named(factory: object, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        factory()  # type: ignore[operator]
