"""The per-period energy of a cumulative meter: resets, dips, outages, glitches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p2p_energy_protocol.household.meter import (
    MeterDelta,
    MeterKind,
    MeterOutcome,
    MeterReading,
    MeterReference,
    advance_meter,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
RESET_1 = datetime(2025, 3, 1, tzinfo=UTC)
RESET_2 = datetime(2025, 3, 2, tzinfo=UTC)


def _reading(kwh: float, minutes: float, **kwargs: object) -> MeterReading:
    return MeterReading(kwh, T0 + minutes * MINUTE, **kwargs)  # type: ignore[arg-type]


def _ref(kwh: float, minutes: float, last_reset: datetime | None = None) -> MeterReference:
    return MeterReference(kwh, T0 + minutes * MINUTE, last_reset)


def test_first_reading_is_baseline() -> None:
    step = advance_meter(None, _reading(100.0, 0), max_power_kw=10)
    assert step.outcome is MeterOutcome.BASELINE
    assert step.reference == _ref(100.0, 0)
    assert step.delta is None


def test_normal_increase_and_float_noise() -> None:
    step = advance_meter(_ref(0.1, 0), _reading(0.4, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.DELTA
    assert step.delta == MeterDelta(T0, T0 + 15 * MINUTE, 0.3)
    assert step.reference == _ref(0.4, 15)


def test_unchanged_meter_publishes_zero() -> None:
    step = advance_meter(_ref(5.0, 0), _reading(5.0, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.DELTA
    assert step.delta == MeterDelta(T0, T0 + 15 * MINUTE, 0.0)


def test_unavailable_keeps_reference_and_energy_arrives_later() -> None:
    reference = _ref(10.0, 0)
    step = advance_meter(reference, None, max_power_kw=10)
    assert step == advance_meter(reference, None, max_power_kw=10)
    assert step.outcome is MeterOutcome.UNAVAILABLE
    assert step.reference is reference
    assert step.delta is None
    # The energy used during the outage is in the next delta, over the whole span.
    step = advance_meter(reference, _reading(12.0, 45), max_power_kw=10)
    assert step.delta == MeterDelta(T0, T0 + 45 * MINUTE, 2.0)


def test_unavailable_before_baseline() -> None:
    step = advance_meter(None, None, max_power_kw=10)
    assert step.outcome is MeterOutcome.UNAVAILABLE
    assert step.reference is None


def test_total_increasing_reset_publishes_energy_since_reset() -> None:
    step = advance_meter(_ref(1000.0, 0), _reading(1.5, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.RESET
    assert step.delta == MeterDelta(T0, T0 + 15 * MINUTE, 1.5)
    assert step.reference == _ref(1.5, 15)


def test_small_dip_keeps_high_water_mark() -> None:
    step = advance_meter(_ref(100.0, 0), _reading(95.0, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.DIP
    assert step.delta == MeterDelta(T0, T0 + 15 * MINUTE, 0.0)
    assert step.reference == _ref(100.0, 15)
    # Recovering to the old value is not counted a second time.
    step = advance_meter(step.reference, _reading(101.0, 30), max_power_kw=10)
    assert step.delta == MeterDelta(T0 + 15 * MINUTE, T0 + 30 * MINUTE, 1.0)


def test_total_with_last_reset() -> None:
    total = MeterKind.TOTAL
    reference = _ref(50.0, 0, RESET_1)
    step = advance_meter(
        reference, _reading(52.0, 15, kind=total, last_reset=RESET_1), max_power_kw=10
    )
    assert step.outcome is MeterOutcome.DELTA
    assert step.delta is not None
    assert step.delta.energy_kwh == 2.0
    # A new last_reset starts a new cycle, even when the value did not drop.
    step = advance_meter(
        reference, _reading(51.0, 15, kind=total, last_reset=RESET_2), max_power_kw=500
    )
    assert step.outcome is MeterOutcome.RESET
    assert step.delta is not None
    assert step.delta.energy_kwh == 51.0
    assert step.reference == _ref(51.0, 15, RESET_2)
    # Without a reset a total that goes down is a dip (energy flowing back), never negative.
    step = advance_meter(
        reference, _reading(10.0, 15, kind=total, last_reset=RESET_1), max_power_kw=10
    )
    assert step.outcome is MeterOutcome.DIP
    assert step.reference == _ref(50.0, 15, RESET_1)
    # A reset to a negative value publishes nothing negative.
    step = advance_meter(
        reference, _reading(-3.0, 15, kind=total, last_reset=RESET_2), max_power_kw=10
    )
    assert step.outcome is MeterOutcome.RESET
    assert step.delta is not None
    assert step.delta.energy_kwh == 0.0


def test_absurd_jump_is_not_published_and_rebases() -> None:
    # 10 kW for 15 minutes is at most 2.5 kWh.
    step = advance_meter(_ref(100.0, 0), _reading(103.0, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.ABSURD
    assert step.delta is None
    assert step.reference == _ref(103.0, 15)
    # Exactly the limit is still plausible.
    step = advance_meter(_ref(100.0, 0), _reading(102.5, 15), max_power_kw=10)
    assert step.outcome is MeterOutcome.DELTA
    # A glitch spike and its return never publish the spike.
    spike = advance_meter(_ref(100.0, 0), _reading(1e9, 15), max_power_kw=10)
    assert spike.outcome is MeterOutcome.ABSURD
    back = advance_meter(spike.reference, _reading(100.5, 30), max_power_kw=10)
    assert back.outcome is MeterOutcome.ABSURD
    normal = advance_meter(back.reference, _reading(101.0, 45), max_power_kw=10)
    assert normal.delta is not None
    assert normal.delta.energy_kwh == 0.5


def test_same_instant_samples_use_a_minimum_interval() -> None:
    step = advance_meter(_ref(1.0, 0), _reading(1.001, 0), max_power_kw=10)
    assert step.outcome is MeterOutcome.DELTA
    step = advance_meter(_ref(1.0, 0), _reading(1.01, 0), max_power_kw=10)
    assert step.outcome is MeterOutcome.ABSURD


def test_clock_going_backwards_starts_over() -> None:
    step = advance_meter(_ref(1.0, 10), _reading(2.0, 0), max_power_kw=10)
    assert step.outcome is MeterOutcome.BASELINE
    assert step.reference == _ref(2.0, 0)


def test_non_finite_reading_is_unavailable() -> None:
    step = advance_meter(_ref(1.0, 0), _reading(float("nan"), 10), max_power_kw=10)
    assert step.outcome is MeterOutcome.UNAVAILABLE


@pytest.mark.parametrize("power", [0, -1, float("inf"), float("nan")])
def test_invalid_max_power(power: float) -> None:
    with pytest.raises(ValueError, match="max_power_kw"):
        advance_meter(None, _reading(1.0, 0), max_power_kw=power)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
        max_size=30,
    )
)
def test_never_negative_never_above_the_power_limit(values: list[float | None]) -> None:
    """Whatever the meter does, each delta is within [0, max power x interval]."""
    reference: MeterReference | None = None
    for minute, value in enumerate(values):
        reading = None if value is None else _reading(value, minute * 15)
        step = advance_meter(reference, reading, max_power_kw=50)
        if step.delta is not None:
            hours = (step.delta.end - step.delta.start).total_seconds() / 3600
            assert 0 <= step.delta.energy_kwh <= 50 * max(hours, 1 / 3600) + 1e-9
            assert step.delta.end == reading.time  # type: ignore[union-attr]
        reference = step.reference


@settings(max_examples=200, deadline=None)
@given(increments=st.lists(st.floats(min_value=0, max_value=2), max_size=30))
def test_published_energy_adds_up_for_a_well_behaved_meter(increments: list[float]) -> None:
    """For a plain increasing meter the deltas sum to the meter's increase."""
    value = 1000.0
    reference: MeterReference | None = None
    published = 0.0
    for minute, increment in enumerate([0.0, *increments]):
        value += increment
        step = advance_meter(reference, _reading(value, minute * 15), max_power_kw=10)
        published += step.delta.energy_kwh if step.delta else 0.0
        reference = step.reference
    assert published == pytest.approx(value - 1000.0, abs=1e-5)


def test_reference_round_trip_and_corruption() -> None:
    reference = _ref(12.5, 3, RESET_1)
    assert MeterReference.from_dict(reference.to_dict()) == reference
    plain = _ref(1.0, 0)
    assert MeterReference.from_dict(plain.to_dict()) == plain
    for corrupt in (
        {},
        {"energy_kwh": "x", "time": T0.isoformat()},
        {"energy_kwh": 1.0, "time": "yesterday"},
        {"energy_kwh": 1.0, "time": 5},
        {"energy_kwh": float("inf"), "time": T0.isoformat()},
        {"energy_kwh": None, "time": T0.isoformat()},
    ):
        with pytest.raises(ValueError, match="invalid"):
            MeterReference.from_dict(corrupt)
