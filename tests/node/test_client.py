"""The async IRI client: errors, MAM publishing and fetching through a node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.errors import IriApiError, NodeUnavailableError, ProtocolError
from p2p_energy_protocol.mam import channel_root, create_channel, create_message, mam_address

from .helpers import MWM, zero_value_bundle
from .process import free_port

if TYPE_CHECKING:
    import aiohttp

    from grid_server.node import NodeServer

SIDE_KEY = "GRIDSIDEKEY"


async def test_api_errors_carry_command_status_and_message(client: IriClient) -> None:
    with pytest.raises(IriApiError) as err:
        await client.call("getTrytes", hashes=["bad"])
    assert err.value.command == "getTrytes"
    assert err.value.status == 400
    assert "81-tryte hash" in err.value.message


async def test_unreachable_node(session: aiohttp.ClientSession) -> None:
    client = IriClient(session, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NodeUnavailableError, match="unreachable"):
        await client.get_node_info()


async def test_an_endpoint_that_is_not_iri(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    client = IriClient(session, f"{node.url}/explorer/")
    with pytest.raises(NodeUnavailableError, match="without an IRI JSON object"):
        await client.get_tips()


async def test_find_transactions_needs_a_field(client: IriClient) -> None:
    with pytest.raises(ProtocolError, match="needs addresses"):
        await client.find_transactions()


async def test_publish_and_fetch_a_restricted_channel(client: IriClient) -> None:
    channel = create_channel("M" * 81, 2, "restricted", SIDE_KEY)
    root = channel_root(channel)
    texts = [{"command": "hello"}, {"command": "usage", "usage": 1.5}, {"command": "goodbye"}]
    messages = [create_message(channel, text) for text in texts]
    # Spam at the first message's address must never block the channel.
    await client.send_trytes(zero_value_bundle(address=messages[0].address, message="spam"), 3, MWM)
    for message in messages:
        attached = await client.publish_mam(message, tag="GRID9ENERGY", min_weight_magnitude=MWM)
        assert {tx.address for tx in attached} == {message.address}
    fetched = await client.fetch_mam(root, "restricted", SIDE_KEY)
    assert [entry.data for entry in fetched] == texts
    assert [entry.root for entry in fetched] == [m.root for m in messages]
    assert fetched[-1].next_root == messages[-1].next_root
    assert [entry.skipped for entry in fetched] == [1, 0, 0]
    # Resume from a later root, with a limit.
    later = await client.fetch_mam(messages[1].root, "restricted", SIDE_KEY, limit=1)
    assert [entry.data for entry in later] == texts[1:2]
    # A wrong side key reads nothing rather than garbage.
    assert await client.fetch_mam(root, "restricted", "WRONGKEY") == []
    assert await client.fetch_mam(messages[-1].next_root, "restricted", SIDE_KEY) == []
    with pytest.raises(ProtocolError, match="limit must be positive"):
        await client.fetch_mam(root, "restricted", SIDE_KEY, limit=0)


async def test_public_channel_lives_at_its_root(client: IriClient) -> None:
    channel = create_channel("P" * 81, 1, "public")
    message = create_message(channel, "HELLO")
    assert mam_address(message.root, "public") == message.root
    await client.publish_mam(message, min_weight_magnitude=MWM)
    (fetched,) = await client.fetch_mam(message.root, "public")
    assert fetched.message.startswith("HELLO")
