"""The durable runtime state: round trips, restarts and corrupt files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pytest_homeassistant_custom_component.common import flush_store

from custom_components.p2p_energy.meter import MeterReference
from custom_components.p2p_energy.protocol.mam import MamMessage
from custom_components.p2p_energy.store import (
    FollowedChannel,
    ParticipantState,
    Payment,
    PaymentRequest,
    PendingPayment,
    QueuedMessage,
    RuntimeStore,
    SourceReading,
    SourceRegistration,
)

if TYPE_CHECKING:
    import pytest
    from homeassistant.core import HomeAssistant

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROOT = "R" * 81
KEY = "K" * 81


def _full_state() -> ParticipantState:
    return ParticipantState(
        channel={"seed": "S" * 81, "start": 3},
        meter=MeterReference(10.5, T0, None),
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
        deregistered=False,
        return_channel=FollowedChannel(ROOT, KEY, "N" * 81, "grid"),
        payment_request=PaymentRequest(ROOT, 345, 1.23, "W" * 81),
        payments=[Payment(ROOT, 345, "W" * 81, "B" * 81, T0)],
        pending_payment=PendingPayment(ROOT, 100, "W" * 81, "D" * 81, T0, ["T" * 2673]),
        wallet_addresses=["A" * 81, "C" * 81],
        remote_sources={
            "registration1": SourceRegistration("registration1", "PV", "solar", ROOT, KEY)
        },
        followed=[FollowedChannel(ROOT, KEY, ROOT, "PV", "registration1", ended=True)],
        source_readings=[SourceReading(ROOT, "M" * 81, 0.75)],
    )


def test_participant_state_round_trip() -> None:
    state = _full_state()
    assert ParticipantState.from_dict(state.to_dict()) == state
    assert state.paid_total == 345
    empty = ParticipantState()
    assert ParticipantState.from_dict(empty.to_dict()) == empty
    assert ParticipantState.from_dict({}) == empty


async def test_store_survives_a_restart(hass: HomeAssistant, hass_storage: dict[str, Any]) -> None:
    store = RuntimeStore(hass, "entry1")
    await store.async_load()
    assert store.participants == {}
    store.participant("a").energy_published_kwh = 1.0
    store.participants["b"] = _full_state()
    await store.async_save()
    await flush_store(store._store)
    assert hass_storage["p2p_energy.entry1"]["data"] == store.as_dict()

    reloaded = RuntimeStore(hass, "entry1")
    await reloaded.async_load()
    assert reloaded.participants == store.participants

    assert reloaded.forget(["b", "c"]) == ["a"]
    assert list(reloaded.participants) == ["b"]

    await reloaded.async_remove()
    assert "p2p_energy.entry1" not in hass_storage


async def test_corrupt_participant_is_discarded(
    hass: HomeAssistant, hass_storage: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = _full_state().to_dict()
    bad = _full_state().to_dict()
    bad["queue"][0]["created"] = "not a time"
    worse = {"payments": [{"amount": "x"}]}
    unsigned = _full_state().to_dict()
    unsigned["pending_payment"]["trytes"] = []
    hass_storage["p2p_energy.entry2"] = {
        "version": 1,
        "minor_version": 1,
        "key": "p2p_energy.entry2",
        "data": {"participants": {"good": good, "bad": bad, "worse": worse, "unsigned": unsigned}},
    }
    store = RuntimeStore(hass, "entry2")
    await store.async_load()
    assert list(store.participants) == ["good"]
    assert "Discarding unreadable saved state of bad" in caplog.text
    assert "Discarding unreadable saved state of worse" in caplog.text
    assert "Discarding unreadable saved state of unsigned" in caplog.text
