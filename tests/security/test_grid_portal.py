"""Attack tests: the portal's sessions, sign-in throttle and forms (issue 11, finding 5).

Live ``p2p-energy node`` and ``p2p-energy grid`` processes on loopback; other client
addresses are other loopback addresses (127.0.0.2, 127.0.0.3, ...). Before this was
fixed, signing out left the session open, a hundred concurrent guesses were all tried,
guesses spread over twenty addresses were never slowed down, the right password was
refused once an address was locked, and a foreign page could sign the operator out.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

import pytest

from .grid_harness import (
    PORTAL_PASSWORD,
    Portal,
    from_address,
    grid_node,
    grid_process,
    stopped_at_exit,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from tests.reliability.processes import GridProcess

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_enabled")]

# The grid's sign-in budget for browsers that never signed in, per budget window.
BUDGET = 20
# The address Home Assistant's ingress gateway stands in for in these tests.
INGRESS = "127.0.0.99"
GRID_ENV = {
    "P2P_ENERGY_PORTAL_PASSWORD": PORTAL_PASSWORD,
    "P2P_ENERGY_PORTAL_TRUSTED_INGRESS": INGRESS,
    # Loopback is refused as an ingress address unless forced (and logged).
    "P2P_ENERGY_PORTAL_ALLOW_UNSAFE_INGRESS": "true",
}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, module_sockets: None) -> Iterator[GridProcess]:
    """One node and one grid for the module (each test uses its own client addresses)."""
    directory = tmp_path_factory.mktemp("portal-attacks")
    node = grid_node(directory, genesis={})
    grid = grid_process(directory, node)
    with stopped_at_exit(node, grid):
        node.start()
        grid.start(env=GRID_ENV)
        yield grid


@pytest.fixture(scope="module")
def operator_device(grid: GridProcess) -> dict[str, str]:
    """The cookies of the operator's browser after its first sign-in, before any attack
    (the device cookie among them)."""

    async def sign_in() -> dict[str, str]:
        async with from_address("127.0.0.1") as session:
            portal = Portal(session, grid.url)
            assert await portal.sign_in() == 302
            return {name: value for name, value in portal.cookies.items() if "device" in name}

    cookies = asyncio.run(sign_in())
    assert cookies, "the portal gives a browser that signed in a device cookie"
    return cookies


@pytest.fixture
async def operator(grid: GridProcess, operator_device: dict[str, str]) -> AsyncIterator[Portal]:
    """The operator's browser, signed in again (from 127.0.0.1)."""
    async with from_address("127.0.0.1") as session:
        portal = Portal(session, grid.url)
        portal.cookies.update(operator_device)
        assert await portal.sign_in() == 302
        yield portal


async def test_signing_out_ends_the_session_on_the_server(operator: Portal) -> None:
    """A copy of the cookie taken before signing out opens nothing afterwards."""
    stolen = dict(operator.cookies)
    assert await operator.status() == 200
    assert await operator.sign_out() == 302
    thief = Portal(operator.session, operator.base.removesuffix("/portal"))
    thief.cookies = stolen
    assert await thief.status() == 401
    assert await operator.status() == 401


async def test_a_foreign_page_cannot_sign_the_operator_out_or_in(operator: Portal) -> None:
    """Form posts without the portal's CSRF token (what a foreign page can send) change
    nothing: the session stays open, and no sign-in happens."""
    assert await operator.post("logout", {}) == 403
    assert await operator.post("logout", {"csrf": "guessed"}) == 403
    token = (await operator.api("session"))["csrfToken"]
    # Even with the token, a browser that says the form comes from another site.
    assert await operator.post("logout", {"csrf": token}, **{"Sec-Fetch-Site": "cross-site"}) == (
        403
    )
    assert await operator.status() == 200
    async with from_address("127.0.0.40") as session:
        forged = Portal(session, operator.base.removesuffix("/portal"))
        assert await forged.post("login", {"password": PORTAL_PASSWORD}) == 403
        assert await forged.status() == 401


async def test_concurrent_guesses_are_counted_before_they_are_checked(grid: GridProcess) -> None:
    """A hundred guesses at once from one address: only the free ones are tried, and
    after them one more per doubling wait (1 s, 2 s, 4 s ...) while the burst lasts."""
    started = time.monotonic()
    async with from_address("127.0.0.2") as session:
        guessers = [Portal(session, grid.url) for _ in range(100)]
        statuses = await asyncio.gather(*(g.sign_in(f"guess-{n}") for n, g in enumerate(guessers)))
    # A loaded machine may stretch the burst past the first waits; each admits one guess.
    waited_out = math.floor(math.log2(time.monotonic() - started + 1))
    assert statuses.count(401) <= 5 + waited_out
    assert statuses.count(401) + statuses.count(429) == 100


async def test_guesses_from_many_addresses_share_one_budget_and_the_operator_gets_in(
    operator: Portal, grid: GridProcess
) -> None:
    """Twenty addresses with five guesses each are held to the grid's budget; meanwhile
    the operator's browser still signs in, and Home Assistant's ingress still opens it."""
    sessions = [from_address(f"127.0.1.{n}") for n in range(1, 21)]
    try:
        statuses: list[int] = []
        for _round in range(5):
            statuses += await asyncio.gather(
                *(Portal(s, grid.url).sign_in("not-the-password") for s in sessions)
            )
        assert statuses.count(401) <= BUDGET
        assert statuses.count(429) >= 100 - BUDGET
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    # A stranger with the right password now waits too ...
    async with from_address("127.0.0.30") as session:
        assert await Portal(session, grid.url).sign_in() == 429
    # ... but the operator's own browser (it signed in before) is not locked out.
    assert await operator.sign_out() == 302
    assert await operator.sign_in() == 302
    assert await operator.status() == 200
    async with from_address(INGRESS) as session:
        ingress = Portal(session, grid.url)
        assert await ingress.status(**{"X-Ingress-Path": "/api/hassio_ingress/x"}) == 200


async def test_a_new_password_ends_every_session(tmp_path: Path) -> None:
    """Restarted with another password, the grid opens none of the old sessions."""
    node = grid_node(tmp_path, genesis={})
    grid = grid_process(tmp_path, node)
    with stopped_at_exit(node, grid):
        node.start()
        grid.start(env=GRID_ENV)
        async with from_address("127.0.0.1") as session:
            portal = Portal(session, grid.url)
            assert await portal.sign_in() == 302
            assert await portal.status() == 200
            grid.stop()
            grid.start(env={**GRID_ENV, "P2P_ENERGY_PORTAL_PASSWORD": "a-new-operator-password"})
            assert await portal.status() == 401
            assert await portal.sign_in("a-new-operator-password") == 302
            assert await portal.status() == 200
