"""The built-in explorer: page, JSON views and their errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from p2p_energy_protocol.address import add_checksum
from p2p_energy_protocol.client import Transfer
from p2p_energy_protocol.mam import channel_root, create_channel, create_message

from .helpers import FUNDED_SEED, MWM, RECEIVER, funded_address, zero_value_bundle

if TYPE_CHECKING:
    import aiohttp
    from p2p_energy_protocol.client import IriClient

    from grid_server.node import NodeServer


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_page_and_assets_are_served_without_a_cdn(
    node: NodeServer, session: aiohttp.ClientSession
) -> None:
    status, page = await get(session, f"{node.url}/explorer/")
    assert status == 200
    assert "/explorer/static/explorer.js" in page
    assert "http" not in page.replace('href="/', "").split("<body>")[0].lower()
    for asset in ("explorer.js", "explorer.css"):
        status, _body = await get(session, f"{node.url}/explorer/static/{asset}")
        assert status == 200
    async with session.get(node.url, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/explorer/"


async def test_transaction_bundle_and_address_views(
    node: NodeServer, client: IriClient, session: aiohttp.ClientSession
) -> None:
    sent = await client.send_transfer(
        FUNDED_SEED, [Transfer(RECEIVER, 25, tag="EXPLORED")], min_weight_magnitude=MWM
    )
    await node.runtime.issue_milestone()
    base = f"{node.url}/explorer/api"
    status, tx = await get(session, f"{base}/transaction/{sent[0].hash}")
    assert status == 200
    assert tx["bundle"] == sent[0].bundle
    assert tx["confirmedBy"] >= 1
    assert tx["trunkTransaction"] == sent[1].hash
    assert tx["approvers"]  # the milestone approves it
    status, bundle = await get(session, f"{base}/bundle/{sent[0].bundle}")
    assert status == 200
    assert bundle["transferred"] == 25 + 1_000_000 - 25
    assert [t["hash"] for t in bundle["instances"][0]] == [t.hash for t in sent]
    assert bundle["confirmedBy"] == tx["confirmedBy"]
    status, address = await get(session, f"{base}/address/{add_checksum(RECEIVER)}")
    assert status == 200
    assert (address["balance"], address["spent"], address["transactionCount"]) == (25, False, 1)
    status, spender = await get(session, f"{base}/address/{funded_address(0)}")
    assert (spender["balance"], spender["spent"]) == (0, True)
    status, state = await get(session, f"{base}/status")
    assert state["latestSolidMilestoneIndex"] >= 1
    status, milestone = await get(session, f"{base}/transaction/{state['latestMilestone']}")
    assert milestone["milestoneIndex"] == state["latestMilestoneIndex"]


async def test_mam_view_reads_a_stream(
    node: NodeServer, client: IriClient, session: aiohttp.ClientSession
) -> None:
    channel = create_channel("X" * 81, 2, "restricted", "VIEWKEY")
    root = channel_root(channel)
    first = create_message(channel, {"command": "hello"})
    await client.send_trytes(zero_value_bundle(address=first.address, message="junk"), 3, MWM)
    await client.publish_mam(first, min_weight_magnitude=MWM)
    await client.publish_mam(create_message(channel, "ABC"), min_weight_magnitude=MWM)
    status, stream = await get(
        session, f"{node.url}/explorer/api/mam?root={root}&mode=restricted&sideKey=VIEWKEY"
    )
    assert status == 200
    assert [m["data"] for m in stream["messages"]] == [{"command": "hello"}, None]
    assert stream["messages"][0]["skippedBundles"] == 1
    assert stream["messages"][1]["message"].startswith("ABC")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("transaction/abc", 400, "hash must be 81 trytes"),
        ("transaction/" + "A" * 81, 404, "is not stored"),
        ("bundle/" + "A" * 81, 404, "is not stored"),
        ("address/" + "A" * 85, 400, "address"),
        ("mam?root=abc", 400, "root must be 81 trytes"),
        ("mam?root=" + "A" * 81 + "&mode=secret", 400, "mode must be"),
        ("mam?root=" + "A" * 81, 400, "needs its sideKey"),
        ("mam?root=" + "A" * 81 + "&mode=public&limit=0", 400, "limit must be"),
        ("mam?root=" + "A" * 81 + "&sideKey=abc", 400, "sideKey must be"),
    ],
)
async def test_bad_explorer_requests(
    node: NodeServer, session: aiohttp.ClientSession, path: str, status: int, message: str
) -> None:
    actual, body = await get(session, f"{node.url}/explorer/api/{path}")
    assert actual == status
    assert message in body["error"]
