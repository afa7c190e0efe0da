"""``p2p-energy grid`` with its in-process node, as one process: the grid a household joins."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp

from custom_components.p2p_energy.protocol.client import IriClient, Transfer
from custom_components.p2p_energy.protocol.signing import generate_address
from tests.reliability.processes import LOOPBACK, GridProcess, free_port, iri

if TYPE_CHECKING:
    from pathlib import Path

MWM = 1  # proof-of-work weight of the test network: fast, still checked
GRID_WALLET = "REALHASS9GRID9WALLET".ljust(81, "9")
FUNDER = "REALHASS9FUNDER".ljust(81, "9")  # pays households' wallets, as a user would


class GridWithNode(GridProcess):
    """The grid and, in the same process, the node of its private network."""

    def __init__(self, directory: Path, settings: dict[str, Any], funds: int = 100_000) -> None:
        self.node_port = free_port()
        self.node_url = f"http://{LOOPBACK}:{self.node_port}"
        super().__init__(
            directory,
            None,
            grid={
                "payments_interval": 0.5,
                "payout_interval": 0.5,
                "min_weight_magnitude": MWM,
                "wallet_seed": GRID_WALLET,
                **settings,
            },
            node={
                "host": LOOPBACK,
                "port": self.node_port,
                "min_weight_magnitude": MWM,
                "genesis": {
                    generate_address(GRID_WALLET, 0, 2): 1_000_000,
                    generate_address(FUNDER, 0, 2): funds,
                },
                "coordinator": {"interval": 0.5},
            },
        )

    def ready(self) -> bool:
        try:
            node_status, info = iri(self.node_url, {"command": "getNodeInfo"}, timeout=2)
        except OSError:
            return False
        return (
            super().ready()
            and node_status == 200
            and info.get("latestSolidSubtangleMilestoneIndex", 0) >= 1
        )

    def fund(self, address: str, value: int) -> None:
        """Send ``value`` IOTA from the funder's genesis address to ``address``."""

        async def send() -> None:
            async with aiohttp.ClientSession() as session:
                client = IriClient(session, self.node_url)
                await client.send_transfer(
                    FUNDER, [Transfer(address, value)], min_weight_magnitude=MWM
                )

        asyncio.run(send())

    def balance(self, address: str) -> int:
        """The confirmed balance of ``address`` on the grid's node."""
        status, body = iri(self.node_url, {"command": "getBalances", "addresses": [address]})
        assert status == 200, body
        return int(body["balances"][0])
