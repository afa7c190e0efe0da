"""Daily solar output and household load curves for the simulated households.

Solar: clear-sky output follows the sun's elevation (from the day of the year and
the latitude), scaled to a panel's peak power and dimmed by a slowly changing cloud
cover. Load: a residential profile with a night base load, a morning and an evening
peak, scaled to a daily consumption and varied per household. Energies are
integrals of these powers over an interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from p2p_energy_protocol.household import MeterReading

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence

_HOURS_PER_DAY: Final = 24.0
_EPOCH: Final = datetime(2000, 1, 1)
# Simulated minutes between samples when integrating a power curve.
_STEP_MINUTES: Final = 5.0


class SimulationError(ValueError):
    """A simulation parameter is out of range; the message names it."""


def solar_declination(day_of_year: int) -> float:
    """The sun's declination in radians (Cooper's approximation)."""
    return math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365)


def sun_elevation(when: datetime, latitude_deg: float) -> float:
    """Sine of the sun's elevation at local solar time ``when`` (negative: night)."""
    declination = solar_declination(when.timetuple().tm_yday)
    latitude = math.radians(latitude_deg)
    hours = when.hour + when.minute / 60 + when.second / 3600
    hour_angle = math.radians(15.0 * (hours - 12.0))
    return math.sin(latitude) * math.sin(declination) + math.cos(latitude) * math.cos(
        declination
    ) * math.cos(hour_angle)


def day_length_hours(day_of_year: int, latitude_deg: float) -> float:
    """Hours between sunrise and sunset."""
    cos_hour_angle = -math.tan(math.radians(latitude_deg)) * math.tan(
        solar_declination(day_of_year)
    )
    if cos_hour_angle <= -1:
        return _HOURS_PER_DAY
    if cos_hour_angle >= 1:
        return 0.0
    return 2 * math.degrees(math.acos(cos_hour_angle)) / 15.0


@dataclass(frozen=True)
class SolarPanel:
    """A PV installation: ``peak_kw`` at the sun in the zenith under a clear sky."""

    peak_kw: float
    latitude_deg: float = 48.0

    def __post_init__(self) -> None:
        if not 0 < self.peak_kw <= 10_000:
            raise SimulationError(f"peak_kw must be in (0, 10000], got {self.peak_kw}")
        if not -66 <= self.latitude_deg <= 66:
            raise SimulationError("latitude_deg must be between -66 and 66 (sun rises daily)")

    def clear_sky_kw(self, when: datetime) -> float:
        elevation = sun_elevation(when, self.latitude_deg)
        if elevation <= 0:
            return 0.0
        # Air mass dims a low sun; the exponent shapes the familiar bell curve.
        return self.peak_kw * math.pow(elevation, 1.15)


@dataclass(frozen=True)
class CloudCover:
    """A slowly varying share of sunlight that gets through (0.15 .. 1.0).

    A sum of slow waves around ``clearness`` with periods of one to seven
    simulated hours and phases drawn from ``rng``: a pure function of the
    simulated time, so a meter read again (after a restart) reads the same sky.
    """

    rng: random.Random = field(repr=False)
    clearness: float = 0.85
    waves: tuple[tuple[float, float, float], ...] = field(init=False, repr=False)
    """(amplitude, period in minutes, phase) of each wave."""

    def __post_init__(self) -> None:
        if not 0.15 <= self.clearness <= 1.0:
            raise SimulationError("clearness must be between 0.15 and 1.0")
        waves = tuple(
            (
                amplitude,
                self.rng.uniform(0.6, 1.4) * period_hours * 60,
                self.rng.uniform(0, 2 * math.pi),
            )
            for amplitude, period_hours in ((0.12, 7.0), (0.08, 2.5), (0.05, 1.0))
        )
        object.__setattr__(self, "waves", waves)

    def level_at(self, when: datetime) -> float:
        """The share of sunlight at simulated time ``when``."""
        minutes = (when - _EPOCH).total_seconds() / 60
        level = self.clearness + sum(
            amplitude * math.sin(2 * math.pi * minutes / period + phase)
            for amplitude, period, phase in self.waves
        )
        return min(1.0, max(0.15, level))


# Relative residential demand by hour: (centre hour, width in hours, weight).
_LOAD_PEAKS: Final = ((7.5, 1.2, 0.9), (12.5, 1.5, 0.35), (19.5, 2.0, 1.3))
_LOAD_BASE: Final = 0.35


def load_shape(hour: float) -> float:
    """Relative household demand at ``hour`` (0-24); its daily mean is about 0.68."""
    value = _LOAD_BASE
    for centre, width, weight in _LOAD_PEAKS:
        # The distance wraps around midnight.
        distance = min(abs(hour - centre), _HOURS_PER_DAY - abs(hour - centre))
        value += weight * math.exp(-0.5 * (distance / width) ** 2)
    return value


def _shape_mean() -> float:
    samples = 24 * 12
    return sum(load_shape(i * _HOURS_PER_DAY / samples) for i in range(samples)) / samples


_SHAPE_MEAN: Final = _shape_mean()


@dataclass(frozen=True)
class Household:
    """A home using ``daily_kwh`` on average, following the residential profile."""

    daily_kwh: float
    # Hours this household runs ahead (+) or behind (-) the average routine.
    routine_shift_hours: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.daily_kwh <= 100_000:
            raise SimulationError(f"daily_kwh must be in (0, 100000], got {self.daily_kwh}")
        if not -3 <= self.routine_shift_hours <= 3:
            raise SimulationError("routine_shift_hours must be between -3 and 3")

    def mean_kw(self, when: datetime) -> float:
        hours = when.hour + when.minute / 60 + when.second / 3600 - self.routine_shift_hours
        average_kw = self.daily_kwh / _HOURS_PER_DAY
        return average_kw * load_shape(hours % _HOURS_PER_DAY) / _SHAPE_MEAN


@dataclass(frozen=True)
class SimulatedClock:
    """Maps wall-clock time onto a faster simulated day.

    ``speed`` simulated seconds pass per real second, starting at ``start`` (local
    solar time of the simulated place) when the wall clock reads ``real_start``.
    """

    start: datetime
    real_start: datetime
    speed: float

    def __post_init__(self) -> None:
        if not 1 <= self.speed <= 100_000:
            raise SimulationError(f"speed must be between 1 and 100000, got {self.speed}")

    @classmethod
    def starting_at_hour(
        cls, hour: float, speed: float, now: datetime | None = None
    ) -> SimulatedClock:
        real = now if now is not None else datetime.now(UTC)
        midnight = real.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        return cls(start=midnight + timedelta(hours=hour), real_start=real, speed=speed)

    def simulated(self, real: datetime) -> datetime:
        return self.start + (real - self.real_start) * self.speed


class CurveMeter:
    """A cumulative energy meter over a power curve in simulated time.

    The power is sampled every five simulated minutes from ``origin`` and taken
    as linear in between, so the running total at a wall-clock instant is a pure
    function of the instant (a reading taken again after a crash comes out the
    same, whatever was read before) and never goes down.
    """

    def __init__(
        self,
        power_kw: Callable[[datetime], float],
        clock: SimulatedClock,
        origin: datetime,
    ) -> None:
        """``origin``: the wall-clock instant the meter reads zero."""
        self._power_kw = power_kw
        self._clock = clock
        self._start = clock.simulated(origin)
        self._step = timedelta(minutes=_STEP_MINUTES)
        self._powers = [power_kw(self._start)]
        """The power at each sample point."""
        self._totals = [0.0]
        """The energy up to each sample point."""

    def total_kwh(self, now: datetime) -> float:
        """kWh from ``origin`` to wall-clock ``now`` (0 before ``origin``)."""
        elapsed = (self._clock.simulated(now) - self._start) / self._step
        if elapsed <= 0:
            return 0.0
        step = int(elapsed)
        hours = _STEP_MINUTES / 60
        while len(self._powers) <= step + 1:
            index = len(self._powers)
            self._powers.append(self._power_kw(self._start + self._step * index))
            self._totals.append(
                self._totals[-1] + hours * (self._powers[-2] + self._powers[-1]) / 2
            )
        fraction = elapsed - step
        before, after = self._powers[step], self._powers[step + 1]
        partial = hours * (before * fraction + (after - before) * fraction * fraction / 2)
        return self._totals[step] + partial

    def read(self, now: datetime) -> MeterReading:
        """The meter's running total at ``now`` (the household engine's meter)."""
        return MeterReading(self.total_kwh(now), now)


def solar_power(panels: Sequence[SolarPanel], clouds: CloudCover) -> Callable[[datetime], float]:
    """The power of ``panels`` under ``clouds`` at a simulated time."""

    def power(when: datetime) -> float:
        return sum(panel.clear_sky_kw(when) for panel in panels) * clouds.level_at(when)

    return power
