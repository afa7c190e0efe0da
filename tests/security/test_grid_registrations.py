"""Attack tests: anonymous registrations are bounded, and the portal's ingress trust cannot
be widened to every local program by accident (issue 11, finding 7).

Live processes on loopback; other client addresses are other loopback addresses. Before
this was fixed every registration was accepted (11 per second, each with a return
channel and its hello), and ``127.0.0.1`` was taken as the ingress gateway without a word.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from .grid_harness import from_address, grid_node, grid_process, stopped_at_exit

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_enabled")]

BURST = 5
QUOTA = 8


async def register(
    session: aiohttp.ClientSession, grid_url: str, name: str, token: str | None = None
) -> tuple[int, dict[str, Any], str | None]:
    """A consumer registration without a channel (it still gets a return channel)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.put(
        f"{grid_url}/registration/{name}",
        json={"itemName": name, "itemType": "consumer"},
        headers=headers,
    ) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_registrations_are_limited_per_address_and_per_grid(tmp_path: Path) -> None:
    """Twenty concurrent new registrations from one address: the burst gets through, the
    rest wait (429, Retry-After); another address is not held back by it; the grid's
    quota stops new registrations from anyone; owners still update theirs."""
    node = grid_node(tmp_path, genesis={})
    grid = grid_process(
        tmp_path,
        node,
        registration_burst=BURST,
        registrations_per_minute=1.0,
        registration_quota=QUOTA,
    )
    with stopped_at_exit(node, grid):
        node.start()
        grid.start()
        async with from_address("127.0.0.2") as flood:
            answers = await asyncio.gather(
                *(register(flood, grid.url, f"flood-{n:04}") for n in range(20))
            )
        statuses = [status for status, _, _ in answers]
        assert statuses.count(200) == BURST
        assert statuses.count(429) == 20 - BURST
        assert all(
            retry is not None and int(retry) >= 1 for status, _, retry in answers if status == 429
        )
        created = [body for status, body, _ in answers if status == 200]
        assert all("root" in body for body in created)  # each got its return channel

        async with from_address("127.0.0.3") as neighbour:
            others = [await register(neighbour, grid.url, f"other-{n:04}") for n in range(4)]
        # Three fit in the quota (5 + 3 = 8), the fourth is refused.
        assert [status for status, _, _ in others] == [200, 200, 200, 403]
        assert "quota" in others[3][1]["message"]

        # At its quota the grid still lets an owner update its registration.
        async with from_address("127.0.0.2") as owner:
            status, body, _ = await register(
                owner, grid.url, "other-0000", token=others[0][1]["token"]
            )
        assert status == 200, body


def test_loopback_ingress_is_refused_unless_forced(tmp_path: Path) -> None:
    """``127.0.0.1`` as the ingress gateway would make every local program the operator:
    the grid refuses to start with it unless it is forced, and then warns."""
    node = grid_node(tmp_path, genesis={})
    grid = grid_process(tmp_path, node)
    with stopped_at_exit(node, grid):
        node.start()
        for address in ("127.0.0.1", "::"):  # every form: tests/portal/test_auth_config.py
            with pytest.raises(RuntimeError, match="exited early"):
                grid.start(env={"P2P_ENERGY_PORTAL_TRUSTED_INGRESS": address}, timeout=30)
            assert "allow_unsafe_ingress_addresses" in grid.log_tail(2000)
        grid.start(
            env={
                "P2P_ENERGY_PORTAL_TRUSTED_INGRESS": "127.0.0.1",
                "P2P_ENERGY_PORTAL_ALLOW_UNSAFE_INGRESS": "true",
            }
        )
        assert "portal trusts ingress from 127.0.0.1" in grid.log_tail()
