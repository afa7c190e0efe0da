"""Live ``p2p-energy node`` and ``p2p-energy grid`` processes for the grid's attack tests,
and the clients an attacker or a household uses against them (all on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

import aiohttp
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.signing import generate_address

from tests.grid.entities import Consumer
from tests.reliability.processes import GridProcess, NodeProcess, ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path


MWM = 1
PORTAL_PASSWORD = "attack-suite-operator-password"
GRID_WALLET_SEED = "SECURITY9GRID9WALLET".ljust(81, "9")
CONSUMER_WALLET_SEED = "SECURITY9CONSUMER9WALLET".ljust(81, "W")
CONSUMER_WALLET = generate_address(CONSUMER_WALLET_SEED, 0, 2)
IMPORT_PRICE = 100
# A slot long enough that a reading published for it is in before it is settled.
SLOT_SECONDS = 2


@contextlib.contextmanager
def stopped_at_exit(*services: ServiceProcess) -> Iterator[None]:
    """Stop every service on the way out, whatever happens (never leave processes behind)."""
    try:
        yield
    finally:
        for service in reversed(services):
            service.stop()


def grid_node(
    directory: Path,
    *,
    genesis: dict[str, int],
    milestone_interval: float = 0.5,
    port: int | None = None,
    **config: Any,
) -> NodeProcess:
    """The grid's node: the coordinator of the private network."""
    return NodeProcess(
        directory,
        port=port,
        config={
            "genesis": genesis,
            "coordinator": {
                "seed": "SECURITY9COORDINATOR".ljust(81, "9"),
                "interval": milestone_interval,
            },
            **config,
        },
    )


def grid_process(directory: Path, node: NodeProcess, **settings: Any) -> GridProcess:
    """A grid whose consumers pay :data:`IMPORT_PRICE` IOTA per kWh (nobody produces)."""
    return GridProcess(
        directory,
        node.url,
        grid={
            "slot_seconds": SLOT_SECONDS,
            "wallet_seed": GRID_WALLET_SEED,
            "import_price": IMPORT_PRICE,
            "export_price": 20,
            "payments_interval": 0.5,
            **settings,
        },
    )


def start_grid(grid: GridProcess) -> None:
    grid.start(env={"P2P_ENERGY_PORTAL_PASSWORD": PORTAL_PASSWORD})


async def eventually[T](
    check: Callable[[], Awaitable[T]], what: str, *services: ServiceProcess, timeout: float = 90
) -> T:
    """The first truthy result of ``check``; fails with the services' logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name}:\n{s.log_tail()}" for s in services)
            raise AssertionError(f"{what} did not happen within {timeout} s\n{logs}")
        await asyncio.sleep(0.3)


def current_slot() -> tuple[int, int]:
    """The slot that is running now (its readings are billed when it is settled)."""
    slot_ms = SLOT_SECONDS * 1000
    start = int(time.time() * 1000) // slot_ms * slot_ms
    return start, start + slot_ms


class Household:
    """A consumer that registers with the grid over HTTP and reads its payment requests."""

    def __init__(self, session: aiohttp.ClientSession, node_url: str, grid_url: str) -> None:
        self.session = session
        self.grid_url = grid_url
        self.node = IriClient(session, node_url)
        self.consumer = Consumer(self.node, "consumer-under-attack", MWM)
        self.reply_root = ""
        self.reply_side_key = ""

    async def register(self) -> None:
        await self.consumer.hello()
        async with self.session.put(
            f"{self.grid_url}/registration/{self.consumer.registration_id}",
            json={
                "itemName": "Flat",
                "itemType": "consumer",
                "root": self.consumer.root,
                "sideKey": self.consumer.side_key,
            },
        ) as response:
            body = await response.json()
            assert response.status == 200, body
        self.reply_root, self.reply_side_key = body["root"], body["sideKey"]

    async def use(self, kwh: float) -> None:
        start, end = current_slot()
        await self.consumer.usage(start, end, kwh)

    async def payment_requests(self) -> list[dict[str, Any]]:
        messages = await self.consumer.payment_requests(self.reply_root, self.reply_side_key)
        return [m for m in messages if m.get("command") == "payment-request"]

    async def request_number(self, count: int, *services: ServiceProcess) -> dict[str, Any]:
        """The ``count``-th payment request, once the grid has published it."""

        async def published() -> list[dict[str, Any]]:
            requests = await self.payment_requests()
            return requests if len(requests) >= count else []

        requests = await eventually(published, f"payment request {count}", *services)
        return requests[count - 1]


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (another loopback address stands
    for another household or attacker)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=200),
        timeout=aiohttp.ClientTimeout(total=60),
    )


class Portal:
    """The operator's portal over HTTP as a browser uses it: its own cookies (the session,
    the sign-in form's, the device's) and the forms' CSRF tokens."""

    def __init__(self, session: aiohttp.ClientSession, grid_url: str) -> None:
        self.session = session
        self.base = f"{grid_url}/portal"
        self.cookies: dict[str, str] = {}

    async def sign_in(self, password: str = PORTAL_PASSWORD) -> int:
        async with self.session.get(f"{self.base}/login", cookies=self.cookies) as page:
            self.cookies.update(response_cookies(page))
            form = {"password": password, **hidden_fields(await page.text())}
        return await self.post("login", form)

    async def sign_out(self) -> int:
        token = (await self.api("session")).get("csrfToken")
        return await self.post("logout", {"csrf": token} if token else {})

    async def post(self, path: str, form: dict[str, str], **headers: str) -> int:
        async with self.session.post(
            f"{self.base}/{path}",
            data=form,
            cookies=self.cookies,
            headers=headers,
            allow_redirects=False,
        ) as response:
            for name, value in response_cookies(response).items():
                if value:
                    self.cookies[name] = value
                else:
                    self.cookies.pop(name, None)
            return response.status

    async def status(self, path: str = "overview", **headers: str) -> int:
        """The status of an API read with this browser's cookies."""
        async with self.session.get(
            f"{self.base}/api/{path}", cookies=self.cookies, headers=headers
        ) as response:
            return response.status

    async def api(self, path: str) -> Any:
        async with self.session.get(f"{self.base}/api/{path}", cookies=self.cookies) as response:
            body = await response.json()
            assert response.status == 200, body
            return body["data"]

    async def incoming_payments(self) -> list[dict[str, Any]]:
        return list((await self.api("payments?kind=incoming"))["items"])


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a form (a CSRF token, if the page has one)."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def response_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for header in response.headers.getall("Set-Cookie", []):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        cookies.update({name: morsel.value for name, morsel in parsed.items()})
    return cookies
