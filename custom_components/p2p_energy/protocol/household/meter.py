"""Per-period energy from a cumulative energy meter.

A meter's state is a running total. Each period a participant samples it and
publishes the energy since the previous sample. Whatever the meter does
(restarts from zero, dips, goes unavailable, jumps to nonsense), no wrong energy
may be published: :func:`advance_meter` decides, purely from the previous
reference and the new sample, what to publish and what the next reference is.
Where the samples come from is the caller's: a Home Assistant sensor, a
simulated household's curves (:class:`Meter`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from ..outbox import parse_time

if TYPE_CHECKING:
    from datetime import datetime

# Home Assistant's recorder treats a drop below 90 % of the previous value of a
# total_increasing sensor as a new meter cycle and anything smaller as a dip.
RESET_THRESHOLD = 0.9
# Energy figures are published with Wh/1000 precision; rounding keeps float
# noise (0.30000000000000004) out of the messages.
ENERGY_DECIMALS = 6
# A sampling interval shorter than this still allows some energy, so two
# samples taken in the same instant do not make every delta "absurd".
MIN_PLAUSIBILITY_SECONDS = 1.0


class MeterKind(StrEnum):
    """How a meter's running total behaves (Home Assistant's energy state classes)."""

    TOTAL_INCREASING = "total_increasing"
    """Only goes up, except when the meter starts a new cycle from (near) zero."""
    TOTAL = "total"
    """Goes up and down; a new cycle is announced by a new ``last_reset``."""


class MeterOutcome(StrEnum):
    """What one sample did to the meter."""

    BASELINE = "baseline"
    """First valid sample: it becomes the reference, nothing is published."""
    DELTA = "delta"
    """Normal increase (or none): the energy since the reference is published."""
    RESET = "reset"
    """The meter started a new cycle: the energy since its reset is published."""
    DIP = "dip"
    """The value went down without a reset: zero is published and the high-water
    mark kept, so the recovery is not counted twice."""
    ABSURD = "absurd"
    """The increase is beyond what the configured maximum power can deliver:
    nothing is published and the new value becomes the reference."""
    UNAVAILABLE = "unavailable"
    """No usable sample: nothing changes; the energy shows up in the next delta."""


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One sample of a cumulative energy sensor, in kWh."""

    energy_kwh: float
    time: datetime
    kind: MeterKind = MeterKind.TOTAL_INCREASING
    last_reset: datetime | None = None


@dataclass(frozen=True, slots=True)
class MeterReference:
    """The sample the next delta is measured from (its high-water mark)."""

    energy_kwh: float
    time: datetime
    last_reset: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form for the store."""
        return {
            "energy_kwh": self.energy_kwh,
            "time": self.time.isoformat(),
            "last_reset": self.last_reset.isoformat() if self.last_reset else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeterReference:
        """Load a reference saved by :meth:`to_dict`; raises ValueError if corrupt."""
        try:
            energy = float(data["energy_kwh"])
            time = parse_time(data["time"])
            last_reset = parse_time(data["last_reset"]) if data.get("last_reset") else None
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"invalid meter reference {data!r}") from err
        if not math.isfinite(energy):
            raise ValueError(f"invalid meter reference energy {energy!r}")
        return cls(energy_kwh=energy, time=time, last_reset=last_reset)


@dataclass(frozen=True, slots=True)
class MeterDelta:
    """Energy measured between two samples: what gets published."""

    start: datetime
    end: datetime
    energy_kwh: float


@dataclass(frozen=True, slots=True)
class MeterStep:
    """The result of one sample: the outcome, the next reference, the delta."""

    outcome: MeterOutcome
    reference: MeterReference | None
    delta: MeterDelta | None = None


def advance_meter(
    reference: MeterReference | None,
    reading: MeterReading | None,
    *,
    max_power_kw: float,
) -> MeterStep:
    """Measure ``reading`` against ``reference``; never returns negative energy."""
    if max_power_kw <= 0 or not math.isfinite(max_power_kw):
        raise ValueError(f"max_power_kw must be a positive number, not {max_power_kw!r}")
    if reading is None or not math.isfinite(reading.energy_kwh):
        return MeterStep(MeterOutcome.UNAVAILABLE, reference)
    if reference is None:
        return MeterStep(MeterOutcome.BASELINE, _reference_of(reading))
    if reading.time < reference.time:
        # A clock step backwards would give a negative interval; start over.
        return MeterStep(MeterOutcome.BASELINE, _reference_of(reading))

    if _is_reset(reference, reading):
        outcome = MeterOutcome.RESET
        energy = max(reading.energy_kwh, 0.0)
    elif reading.energy_kwh < reference.energy_kwh:
        # Keep the high-water mark and its last_reset; only the time moves on.
        dip_reference = MeterReference(
            reference.energy_kwh, reading.time, reading.last_reset or reference.last_reset
        )
        delta = MeterDelta(reference.time, reading.time, 0.0)
        return MeterStep(MeterOutcome.DIP, dip_reference, delta)
    else:
        outcome = MeterOutcome.DELTA
        energy = reading.energy_kwh - reference.energy_kwh

    energy = round(energy, ENERGY_DECIMALS)
    seconds = max((reading.time - reference.time).total_seconds(), MIN_PLAUSIBILITY_SECONDS)
    if energy > max_power_kw * seconds / 3600:
        return MeterStep(MeterOutcome.ABSURD, _reference_of(reading))
    return MeterStep(
        outcome, _reference_of(reading), MeterDelta(reference.time, reading.time, energy)
    )


def _is_reset(reference: MeterReference, reading: MeterReading) -> bool:
    if reading.kind is MeterKind.TOTAL:
        return (
            reading.last_reset is not None
            and reference.last_reset is not None
            and reading.last_reset != reference.last_reset
        )
    return reading.energy_kwh < RESET_THRESHOLD * reference.energy_kwh


def _reference_of(reading: MeterReading) -> MeterReference:
    return MeterReference(reading.energy_kwh, reading.time, reading.last_reset)


class Meter(Protocol):
    """Where a participant's samples come from."""

    def read(self, now: datetime) -> MeterReading | None:
        """The meter's running total at ``now``, or None when it has no usable value."""
        ...
