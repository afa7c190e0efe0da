"""The durable state of participants: round trips, corrupt saves, older formats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from p2p_energy_protocol.household.meter import MeterReference
from p2p_energy_protocol.household.state import (
    FollowedChannel,
    HouseholdStore,
    MemoryBackend,
    OpenPeriod,
    ParticipantState,
    Payment,
    PendingPayment,
    ReceivedRequest,
    SourceReading,
    SourceRegistration,
)
from p2p_energy_protocol.mam import MamMessage
from p2p_energy_protocol.outbox import QueuedMessage
from p2p_energy_protocol.payloads import PaymentRequest

if TYPE_CHECKING:
    import pytest

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROOT = "R" * 81
KEY = "K" * 81


def full_state() -> ParticipantState:
    """A state with every field set."""
    return ParticipantState(
        channel={"seed": "S" * 81, "start": 3},
        meter=MeterReference(10.5, T0, None),
        meter_id="sensor.inverter",
        queue=[
            QueuedMessage(
                sequence=7,
                kind="output",
                body={"command": "output", "output": 1.5},
                message=MamMessage(
                    payload="PAYLOAD", root=ROOT, address="A" * 81, next_root="N" * 81
                ),
                created=T0,
                energy_kwh=1.5,
            )
        ],
        next_sequence=8,
        energy_published_kwh=42.25,
        last_publish=T0,
        registered_root=ROOT,
        registration_token="token",
        deregistered=False,
        return_channel=FollowedChannel(ROOT, KEY, "N" * 81, "grid"),
        payment_request=ReceivedRequest(ROOT, PaymentRequest(345, 1.23, "W" * 81)),
        payments=[Payment(ROOT, 345, "W" * 81, "B" * 81, T0)],
        pending_payment=PendingPayment(ROOT, 100, "W" * 81, "D" * 81, T0, ["T" * 2673]),
        wallet_addresses=["A" * 81, "C" * 81],
        remote_sources={
            "registration1": SourceRegistration("registration1", "PV", "solar", ROOT, KEY)
        },
        followed=[
            FollowedChannel(ROOT, KEY, ROOT, "PV", "registration1", ended=True, read_until_ms=9)
        ],
        source_readings=[SourceReading(ROOT, "M" * 81, 0.75, 1, 9)],
        open_periods=[OpenPeriod(9, 18, 0.5), OpenPeriod(18, 27, None)],
        published_until_ms=9,
    )


def test_participant_state_round_trip() -> None:
    state = full_state()
    assert ParticipantState.from_dict(state.to_dict()) == state
    assert state.paid_total == 345
    assert state.energy_measured_kwh == 43.75
    empty = ParticipantState()
    assert ParticipantState.from_dict(empty.to_dict()) == empty
    assert ParticipantState.from_dict({}) == empty


def test_state_saved_before_periods_and_wire_requests_still_loads() -> None:
    saved = full_state().to_dict()
    saved["payment_request"] = {
        "root": ROOT,
        "owed": 345,
        "usage_kwh": 1.23,
        "payment_id_or_address": "W" * 81,
    }
    saved["source_readings"] = [{"channel_root": ROOT, "message_root": "M" * 81, "output_kwh": 1}]
    for key in ("open_periods", "published_until_ms"):
        del saved[key]
    del saved["followed"][0]["read_until_ms"]
    state = ParticipantState.from_dict(saved)
    assert state.payment_request == ReceivedRequest(ROOT, PaymentRequest(345, 1.23, "W" * 81))
    assert state.source_readings == [SourceReading(ROOT, "M" * 81, 1.0)]
    assert (state.open_periods, state.published_until_ms) == ([], None)
    assert state.followed[0].read_until_ms is None


async def test_store_keeps_everyone_and_forgets_who_left() -> None:
    backend = MemoryBackend()
    store = HouseholdStore(backend)
    await store.load()
    assert store.participants == {}
    store.participant("a").energy_published_kwh = 1.0
    store.participants["b"] = full_state()
    await store.save()
    assert backend.data == store.as_dict()

    reloaded = HouseholdStore(backend)
    await reloaded.load()
    assert reloaded.participants == store.participants
    assert reloaded.forget(["b", "c"]) == ["a"]
    assert list(reloaded.participants) == ["b"]


async def test_corrupt_participant_is_discarded(caplog: pytest.LogCaptureFixture) -> None:
    good = full_state().to_dict()
    bad = full_state().to_dict()
    bad["queue"][0]["created"] = "not a time"
    worse = {"payments": [{"amount": "x"}]}
    unsigned = full_state().to_dict()
    unsigned["pending_payment"]["trytes"] = []
    not_a_request = full_state().to_dict()
    not_a_request["payment_request"] = {"root": ROOT, "message": {"command": "hello"}}
    backend = MemoryBackend()
    backend.data = {
        "participants": {
            "good": good,
            "bad": bad,
            "worse": worse,
            "unsigned": unsigned,
            "not_a_request": not_a_request,
        }
    }
    store = HouseholdStore(backend)
    await store.load()
    assert list(store.participants) == ["good"]
    for name in ("bad", "worse", "unsigned", "not_a_request"):
        assert f"Discarding unreadable saved state of {name}" in caplog.text
