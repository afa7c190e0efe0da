"""Setting up a grid connection: channels, registrations, unloading, removal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigEntryState

from .conftest import CONSUMER_ID, PRODUCER_ID, SOURCE_ID
from .fake_network import GRID_SIDE_KEY, FakeNetwork

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from pytest_homeassistant_custom_component.common import MockConfigEntry


async def test_setup_opens_channels_and_registers(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, fake_network: FakeNetwork
) -> None:
    """Each participant says hello on its channel; producer and consumer register."""
    assert loaded_entry.state is ConfigEntryState.LOADED
    coordinator = loaded_entry.runtime_data
    participants = coordinator.participants
    assert set(participants) == {SOURCE_ID, PRODUCER_ID, CONSUMER_ID}
    for participant in participants.values():
        assert participant.channel_root is not None
        assert fake_network.bodies(participant.channel_root, participant.side_key) == [
            {"command": "hello"}
        ]
        assert participant.registered
        assert participant.state.queue == []
    assert set(fake_network.registrations) == {"producer-registration-1", "consumer-registration-1"}
    producer = fake_network.registrations["producer-registration-1"]
    assert producer["item_type"] == "producer"
    assert producer["root"] == participants[PRODUCER_ID].channel_root
    consumer = participants[CONSUMER_ID]
    assert consumer.state.return_channel is not None
    assert consumer.state.return_channel.side_key == GRID_SIDE_KEY
