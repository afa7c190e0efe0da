"""Shared test data: configurations, seeds and bundles built with the protocol library."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.pow import attach_to_tangle
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import ascii_to_trytes

from grid_server.node import CoordinatorConfig, NodeConfig
from grid_server.node.config import PeeringConfig

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import pytest

    from grid_server.node.runtime import NodeRuntime

MWM = 2
NULL_HASH = "9" * 81
COORDINATOR_SEED = "COORDINATOR9OF9THE9TEST9NETWORK".ljust(81, "9")
FUNDED_SEED = "FUNDED9WALLET9SEED".ljust(81, "A")
GENESIS_BALANCE = 1_000_000
RECEIVER = "RECEIVER".ljust(80, "Z") + "9"
# Shared by the test network's nodes, so they accept each other as neighbours.
PEERING_SECRET = "test-network-peering-secret-0123456789"


@cache
def funded_address(index: int = 0) -> str:
    return generate_address(FUNDED_SEED, index, 2)


def node_config(database_url: str, **overrides: Any) -> NodeConfig:
    """A coordinator node: low proof of work, milestones issued by the tests."""
    coordinator = CoordinatorConfig(seed=COORDINATOR_SEED, interval=3600)
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        database_url=database_url,
        min_weight_magnitude=MWM,
        genesis={funded_address(0): GENESIS_BALANCE},
        coordinator=coordinator,
        sync_interval=0.5,
        peering=PeeringConfig(secret=PEERING_SECRET),
    )
    return replace(config, **overrides)


def zero_value_bundle(
    address: str = RECEIVER, message: str = "", tag: str = "NODE9TEST", count: int = 1
) -> list[str]:
    """Trytes of an unattached zero-value bundle, last index first (as clients send)."""
    builder = BundleBuilder()
    for position in range(count):
        text = ascii_to_trytes(f"{message}{position}") if message else ""
        builder.add_transfer(address, 0, tag=tag, message_trytes=text)
    builder.finalize()
    return builder.to_trytes()


def attach(
    trytes: list[str], trunk: str = NULL_HASH, branch: str = NULL_HASH, mwm: int = MWM
) -> list[str]:
    """Attach locally (tail first), for requests the tests send themselves."""
    return attach_to_tangle(trytes, trunk, branch, mwm)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def count_remote_attaches(monkeypatch: pytest.MonkeyPatch, runtime: NodeRuntime) -> list[int]:
    """The sizes of the node's own proof-of-work requests (attachToTangle), as they come."""
    calls: list[int] = []
    original = runtime.attach

    async def counting(trytes: Any, *args: Any, **kwargs: Any) -> list[str]:
        calls.append(len(trytes))
        return await original(trytes, *args, **kwargs)

    monkeypatch.setattr(runtime, "attach", counting)
    return calls
