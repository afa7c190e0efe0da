"""The producer registration API served by Home Assistant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.p2p_energy.protocol.mam import channel_root, create_channel, create_message

from .conftest import PRODUCER_ID, PRODUCER_TOKEN

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory
    from homeassistant.core import HomeAssistant

    from tests.engine.fake_network import FakeNetwork

ClientFactory = Callable[[], Awaitable[TestClient]]
BASE = f"/api/p2p_energy/producer/{PRODUCER_TOKEN}/registration"
REMOTE_SEED = "REMOTESOURCE" + "9" * 69
REMOTE_KEY = "REMOTEKEY" + "9" * 72


class RemoteSource:
    """A source in another home, publishing on its own channel."""

    def __init__(self, network: FakeNetwork, seed: str = REMOTE_SEED) -> None:
        """Open the channel (not yet published)."""
        self.network = network
        self.channel = create_channel(seed, 2, "restricted", REMOTE_KEY)
        self.root = channel_root(self.channel)

    def publish(self, body: dict[str, Any] | str) -> None:
        """Attach the next message."""
        message = create_message(self.channel, body)
        self.network.tangle[message.address].append(message.payload)


async def put(client: TestClient, registration_id: str, body: Any) -> tuple[int, Any]:
    """PUT a registration; return status and JSON answer."""
    data = body if isinstance(body, str | bytes) else None
    response = await client.put(
        f"{BASE}/{registration_id}", data=data, json=None if data is not None else body
    )
    return response.status, await response.json()


@pytest.fixture
async def client(hass_client_no_auth: ClientFactory, loaded_entry: MockConfigEntry) -> TestClient:
    """An HTTP client without Home Assistant credentials, like a source."""
    return await hass_client_no_auth()


async def test_register_follow_and_deregister(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    client: TestClient,
    loaded_entry: MockConfigEntry,
    fake_network: FakeNetwork,
) -> None:
    """A remote source registers, is followed, and leaves with its side key."""
    source = RemoteSource(fake_network)
    source.publish({"command": "hello"})
    status, answer = await put(
        client,
        "remote-source-1",
        {
            "itemName": "Neighbour PV",
            "itemType": "solar",
            "root": source.root,
            "sideKey": REMOTE_KEY,
        },
    )
    assert (status, answer) == (200, {"success": True, "message": "OK"})
    producer = loaded_entry.runtime_data.participants[PRODUCER_ID]
    assert producer.registered_sources == 2
    assert hass.states.get("sensor.inverter_registered_sources").state == "2"

    # Updating without the channel keeps it (the blueprint's re-registration).
    status, _ = await put(client, "remote-source-1", {"itemName": "Neighbour roof"})
    assert status == 200
    registration = producer.state.remote_sources["remote-source-1"]
    assert (registration.item_name, registration.root) == ("Neighbour roof", source.root)

    source.publish({"command": "output", "startTime": 1, "endTime": 2, "output": 2.25})
    freezer.tick(timedelta(seconds=31))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert [reading.output_kwh for reading in producer.state.source_readings] == [2.25]

    response = await client.delete(f"{BASE}/remote-source-1/{'X' * 81}")
    assert response.status == 403
    assert (await response.json())["success"] is False
    response = await client.delete(f"{BASE}/remote-source-1/{REMOTE_KEY}")
    assert response.status == 200
    assert producer.state.remote_sources == {}
    assert hass.states.get("sensor.inverter_registered_sources").state == "1"
    assert all(channel.registration_id != "remote-source-1" for channel in producer.state.followed)
    response = await client.delete(f"{BASE}/remote-source-1/{REMOTE_KEY}")
    assert response.status == 404


async def test_registration_without_channel(
    client: TestClient, loaded_entry: MockConfigEntry
) -> None:
    """A bare registration id is accepted; it cannot be removed without a side key."""
    status, _ = await put(client, "  bare-registration  ", "")
    assert status == 200
    producer = loaded_entry.runtime_data.participants[PRODUCER_ID]
    assert producer.state.remote_sources["bare-registration"].root is None
    response = await client.delete(f"{BASE}/bare-registration/{'K' * 81}")
    assert response.status == 403


@pytest.mark.parametrize(
    ("registration_id", "body", "status", "message"),
    [
        ("short", {}, 400, "The parameter 'registrationId' has an invalid value."),
        ("x" * 129, {}, 400, "The parameter 'registrationId' has an invalid value."),
        ("good-registration", [], 400, "The parameter 'body' has an invalid value."),
        ("good-registration", "{not json", 400, "The request body is not JSON."),
        ("good-registration", {"root": "abc"}, 400, "The parameter 'root' has an invalid value."),
        ("good-registration", {"sideKey": 5}, 400, "The parameter 'sideKey' has an invalid value."),
        (
            "good-registration",
            {"itemName": 5},
            400,
            "The parameter 'itemName' has an invalid value.",
        ),
        (
            "good-registration",
            {"itemType": "x" * 300},
            400,
            "The parameter 'itemType' has an invalid value.",
        ),
        (
            "good-registration",
            {"root": "A" * 81},
            400,
            "The parameter 'sideKey' has an invalid value.",
        ),
        (
            "good-registration",
            {"root": "A" * 81, "sideKey": "B" * 81},
            400,
            "The channel does not start with a 'hello' message.",
        ),
        ("good-registration", "x" * 20_000, 413, "The request body is too large."),
    ],
)
async def test_invalid_registrations(
    client: TestClient, registration_id: str, body: Any, status: int, message: str
) -> None:
    """Bad input gets a 4xx with the blueprint's message shape."""
    assert await put(client, registration_id, body) == (
        status,
        {"success": False, "message": message},
    )


async def test_hello_required_and_node_down(client: TestClient, fake_network: FakeNetwork) -> None:
    """The channel must start with hello; an unreadable channel is a 503."""
    source = RemoteSource(fake_network)
    source.publish("GARBAGE")
    source.publish({"command": "output", "startTime": 1, "endTime": 2, "output": 1})
    body = {"root": source.root, "sideKey": REMOTE_KEY}
    status, answer = await put(client, "remote-source-1", body)
    assert (status, answer["message"]) == (
        400,
        "The channel does not start with a 'hello' message.",
    )

    fake_network.node_up = False
    status, answer = await put(client, "remote-source-1", body)
    assert status == 503
    assert answer["message"].startswith("The channel could not be read")


async def test_unknown_producer_and_delete_shapes(
    client: TestClient, hass: HomeAssistant, loaded_entry: MockConfigEntry
) -> None:
    """Unknown tokens are 404; a delete needs a valid side key."""
    other = "/api/p2p_energy/producer/unknown/registration/registration-1"
    assert (await client.put(other, json={})).status == 404
    assert (await client.delete(other)).status == 404
    assert (await client.delete(f"{other}/{'K' * 81}")).status == 404

    response = await client.delete(f"{BASE}/registration-1")
    assert response.status == 400
    assert (await response.json())["message"] == "The parameter 'sideKey' has an invalid value."
    assert (await client.delete(f"{BASE}/registration-1/short")).status == 400
    assert (await client.delete(f"{BASE}/short/{'K' * 81}")).status == 400

    # An unloaded entry's producers are not served.
    await hass.config_entries.async_unload(loaded_entry.entry_id)
    assert (await client.put(f"{BASE}/registration-1", json={})).status == 404


async def test_odd_registration_ids_and_chunked_bodies(client: TestClient) -> None:
    """Control characters in an id and oversized bodies without a length are refused."""
    status, answer = await put(client, "%01registration", {})
    assert (status, answer["message"]) == (
        400,
        "The parameter 'registrationId' has an invalid value.",
    )

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 1000

    response = await client.put(f"{BASE}/registration-1", data=chunks())
    assert response.status == 413
