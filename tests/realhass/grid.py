"""``p2p-energy grid`` with its in-process node, as one process: the grid a household joins."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp

from custom_components.p2p_energy.protocol.client import IriClient, Transfer
from custom_components.p2p_energy.protocol.signing import generate_address
from tests.reliability.processes import (
    LOOPBACK,
    ServiceProcess,
    free_port,
    iri,
    request_json,
    write_toml,
)

if TYPE_CHECKING:
    from pathlib import Path

MWM = 1  # proof-of-work weight of the test network: fast, still checked
GRID_WALLET = "REALHASS9GRID9WALLET".ljust(81, "9")
FUNDER = "REALHASS9FUNDER".ljust(81, "9")  # pays households' wallets, as a user would


class GridWithNode(ServiceProcess):
    """The grid and, in the same process, the node of its private network."""

    def __init__(self, directory: Path, settings: dict[str, Any], funds: int = 100_000) -> None:
        port = free_port()
        self.node_port = free_port()
        self.node_url = f"http://{LOOPBACK}:{self.node_port}"
        data_dir = directory / "grid-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = directory / "grid.toml"
        write_toml(
            config,
            {
                "grid": {
                    "follow_interval": 0.5,
                    "publish_interval": 0.5,
                    "payments_interval": 0.5,
                    "payout_interval": 0.5,
                    "min_weight_magnitude": MWM,
                    "wallet_seed": GRID_WALLET,
                    "log_format": "text",
                    **settings,
                },
                "node": {
                    "host": LOOPBACK,
                    "port": self.node_port,
                    "min_weight_magnitude": MWM,
                    "genesis": {
                        generate_address(GRID_WALLET, 0, 2): 1_000_000,
                        generate_address(FUNDER, 0, 2): funds,
                    },
                    "coordinator": {"interval": 0.5},
                },
            },
        )
        super().__init__(
            "grid",
            directory,
            [
                "grid",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--database",
                f"sqlite:///{directory / 'grid.sqlite3'}",
                "--config",
                str(config),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "WARNING",
            ],  # fmt: skip
            port,
        )

    def ready(self) -> bool:
        try:
            grid_status, _ = request_json("GET", f"{self.url}/health", timeout=2)
            node_status, info = iri(self.node_url, {"command": "getNodeInfo"}, timeout=2)
        except OSError:
            return False
        return (
            grid_status == 200
            and node_status == 200
            and info.get("latestSolidSubtangleMilestoneIndex", 0) >= 1
        )

    def health(self) -> dict[str, Any]:
        status, body = request_json("GET", f"{self.url}/health", timeout=5)
        assert status == 200, body
        return dict(body)

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
