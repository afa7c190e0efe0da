"""The producer registration API, tested once for every server that hosts it.

Where the two copies it replaced disagreed: a wrong side key is 403 (well formed,
authenticates nothing), a malformed one 400; the hello is found by parsing the
channel's first messages (HELLO_SEARCH_DEPTH of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from p2p_energy_protocol.household import Producer
from p2p_energy_protocol.household.producer_api import BODY_MAX_BYTES, producer_routes
from p2p_energy_protocol.payloads import HELLO_SEARCH_DEPTH

from .households import Home, config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SOURCE = config("source", "remote pv")
PRODUCER = config("producer", "inverter", price=40.0)


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestClient[Any, Any], Home, Home]]:
    """A producer serving its API, and a household whose source registers with it."""
    home, elsewhere = Home(), Home()
    await home.open(PRODUCER)
    elsewhere.network = home.network
    await elsewhere.open(SOURCE)
    await elsewhere.sync()  # the source's hello is out
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    app = web.Application()
    app.add_routes(producer_routes(producer))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, home, elsewhere
    finally:
        await client.close()


def channel(home: Home) -> dict[str, str]:
    source = home["source-remote pv"]
    assert source.channel_root is not None
    return {"root": source.channel_root, "sideKey": source.side_key}


async def answer(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status, await response.json()


async def test_register_update_and_remove(
    api: tuple[TestClient[Any, Any], Home, Home],
) -> None:
    client, home, elsewhere = api
    body = {"itemName": "Roof", "itemType": "solar", **channel(elsewhere)}
    assert await answer(await client.put("/registration/source-0001", json=body)) == (
        200,
        {"success": True, "message": "OK"},
    )
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    # Re-registering keeps what is not sent again.
    assert (
        await client.put("/registration/source-0001", json={"itemName": "Roof 2"})
    ).status == 200
    registration = producer.state.remote_sources["source-0001"]
    assert (registration.item_name, registration.item_type, registration.root) == (
        "Roof 2",
        "solar",
        body["root"],
    )
    assert producer.registered_sources == 1
    # The producer follows the channel now, and keeps its source list in the grid's storage.
    await home.sync()
    assert [channel.registration_id for channel in producer.state.followed] == ["source-0001"]
    stored = (producer.registration_id, "sources", "source-0001")
    assert home.network.storage == {stored: {"itemName": "Roof 2", "itemType": "solar"}}

    wrong = await client.delete(f"/registration/source-0001/{'X' * 81}")
    assert await answer(wrong) == (
        403,
        {"success": False, "message": "The parameter 'sideKey' does not match."},
    )
    malformed = await client.delete("/registration/source-0001/short")
    assert malformed.status == 400
    assert (await client.delete("/registration/source-0001")).status == 400
    assert (await client.delete(f"/registration/source-0001/{body['sideKey']}")).status == 200
    assert producer.state.remote_sources == {}
    assert producer.state.followed == []
    await home.sync()
    assert home.network.storage == {}
    gone = await client.delete(f"/registration/source-0001/{body['sideKey']}")
    assert await answer(gone) == (
        404,
        {"success": False, "message": "The registration does not exist."},
    )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/registration/short", {}, "The parameter 'registrationId' has an invalid value."),
        ("/registration/source-0002", [], "The parameter 'body' has an invalid value."),
        (
            "/registration/source-0002",
            {"root": "abc"},
            "The parameter 'root' has an invalid value.",
        ),
        (
            "/registration/source-0002",
            {"root": "R" * 81},
            "The parameter 'sideKey' has an invalid value.",
        ),
        (
            "/registration/source-0002",
            {"itemName": 5},
            "The parameter 'itemName' has an invalid value.",
        ),
        (
            "/registration/source-0002",
            {"itemType": "x" * 257},
            "The parameter 'itemType' has an invalid value.",
        ),
    ],
)
async def test_bad_registrations_are_400_naming_the_parameter(
    api: tuple[TestClient[Any, Any], Home, Home], path: str, body: Any, message: str
) -> None:
    client, home, _ = api
    assert await answer(await client.put(path, json=body)) == (
        400,
        {"success": False, "message": message},
    )
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    assert producer.state.remote_sources == {}


async def test_bodies_that_are_not_json_or_too_large(
    api: tuple[TestClient[Any, Any], Home, Home],
) -> None:
    client, _, _ = api
    not_json = await client.put("/registration/source-0003", data=b"{not json")
    assert await answer(not_json) == (
        400,
        {"success": False, "message": "The request body is not JSON."},
    )
    large = await client.put("/registration/source-0003", data=b" " * (BODY_MAX_BYTES + 1))
    assert large.status == 413
    assert (await client.put("/registration/source-0003", data=b"")).status == 200


async def test_the_channel_must_start_with_hello(
    api: tuple[TestClient[Any, Any], Home, Home],
) -> None:
    client, home, elsewhere = api
    # A channel whose hello is not among its first messages is refused.
    source = elsewhere["source-remote pv"]
    await source.rotate()  # goodbye on the old channel; hello is queued on the new one
    refused = await client.put("/registration/source-0004", json=channel(elsewhere))
    assert await answer(refused) == (
        400,
        {"success": False, "message": "The channel does not start with a 'hello' message."},
    )
    await elsewhere.sync()
    assert (await client.put("/registration/source-0004", json=channel(elsewhere))).status == 200
    # The node cannot be read: try again later.
    home.network.node_up = False
    unreadable = await client.put(
        "/registration/source-0005", json={"root": "R" * 81, "sideKey": "K" * 81}
    )
    assert unreadable.status == 503
    assert HELLO_SEARCH_DEPTH == 5
