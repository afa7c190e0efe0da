"""Simulated sources, producers and consumers speaking the real protocol.

Every entity publishes on its own restricted MAM channel through the node and
registers over HTTP as the blueprint describes: sources with their producer's
registration API, producers and consumers with the grid. Producers read their
sources' channels and publish the aggregate with an asking price; consumers publish
their usage, read the grid's payment requests and pay them from their wallet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from aiohttp import web
from p2p_energy_protocol.address import validate_address
from p2p_energy_protocol.client import Transfer
from p2p_energy_protocol.errors import (
    GridApiError,
    InsufficientBalanceError,
    ProtocolError,
)
from p2p_energy_protocol.grid_client import GridClient, ProducerClient
from p2p_energy_protocol.payloads import (
    ConsumerUsage,
    Hello,
    PaymentRequest,
    ProducerOutput,
    SourceOutput,
    parse_grid_message,
    parse_source_message,
    payload_to_json,
)
from p2p_energy_protocol.signing import generate_address

from .channels import Follower, Publisher, TangleSettings
from .curves import CloudCover, Household, SimulatedClock, SolarPanel, integrate_kwh
from .producer_api import ProducerRegistrationApi, SourceRegistration

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aiohttp
    from p2p_energy_protocol.client import IriClient

_LOGGER = logging.getLogger(__name__)
BILL_TAG: Final = "ENERGYBILL"
# Rounding of published energies: watt-hours are plenty for a meter.
_KWH_DIGITS: Final = 6


@dataclass(frozen=True)
class Period:
    """One publishing period in wall-clock Unix milliseconds."""

    start_ms: int
    end_ms: int


def solar_kwh(
    panels: Sequence[SolarPanel], clouds: CloudCover, clock: SimulatedClock, period: Period
) -> float:
    """kWh the panels deliver in ``period`` under ``clouds`` (which move on by the period)."""
    start = clock.simulated(_utc(period.start_ms))
    end = clock.simulated(_utc(period.end_ms))
    clearness = clouds.advance((end - start).total_seconds() / 60)
    clear_sky = sum(integrate_kwh(panel.clear_sky_kw, start, end) for panel in panels)
    return round(clear_sky * clearness, _KWH_DIGITS)


def usage_kwh(household: Household, clock: SimulatedClock, period: Period) -> float:
    """kWh ``household`` uses in ``period``."""
    start = clock.simulated(_utc(period.start_ms))
    end = clock.simulated(_utc(period.end_ms))
    return round(integrate_kwh(household.mean_kw, start, end), _KWH_DIGITS)


class SimSource:
    """A PV array publishing its output to its producer's channel reader."""

    def __init__(
        self,
        name: str,
        registration_id: str,
        panel: SolarPanel,
        clouds: CloudCover,
        client: IriClient,
        settings: TangleSettings,
    ) -> None:
        self.name = name
        self.registration_id = registration_id
        self.panel = panel
        self.clouds = clouds
        self.publisher = Publisher(client, settings)
        self.total_kwh = 0.0

    async def start(self, producer: ProducerClient) -> None:
        await self.publisher.publish(payload_to_json(Hello()))
        await producer.register(
            self.registration_id,
            item_name=self.name,
            item_type="solar",
            root=self.publisher.root,
            side_key=self.publisher.side_key,
        )

    def output_kwh(self, clock: SimulatedClock, period: Period) -> float:
        return solar_kwh((self.panel,), self.clouds, clock, period)

    async def publish(self, clock: SimulatedClock, period: Period) -> float:
        kwh = self.output_kwh(clock, period)
        # Counted once queued: a message the node refuses now goes out with the next one.
        self.total_kwh += kwh
        await self.publisher.publish(
            payload_to_json(SourceOutput(period.start_ms, period.end_ms, kwh))
        )
        return kwh


@dataclass
class _SourceChannel:
    registration: SourceRegistration
    follower: Follower


class SimProducer:
    """Owns sources, hosts the registration API for them and sells their output."""

    def __init__(
        self,
        name: str,
        registration_id: str,
        seed: str,
        price: float,
        client: IriClient,
        session: aiohttp.ClientSession,
        settings: TangleSettings,
    ) -> None:
        self.name = name
        self.registration_id = registration_id
        self.price = price
        self.payment_address = generate_address(seed, 0, 2)
        self.publisher = Publisher(client, settings)
        self._client = client
        self._session = session
        self._api = ProducerRegistrationApi(client, self._source_changed)
        self._channels: dict[str, _SourceChannel] = {}
        self._runner: web.AppRunner | None = None
        self._grid: GridClient | None = None
        self._token: str | None = None
        self.url = ""
        self.total_kwh = 0.0
        self.skipped_messages = 0

    async def serve(self, host: str = "127.0.0.1") -> ProducerClient:
        """Start the registration API on a free port; returns a client for sources."""
        app = web.Application()
        app.add_routes(self._api.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{port}"
        return ProducerClient(self._session, self.url)

    async def register(self, grid: GridClient) -> None:
        await self.publisher.publish(payload_to_json(Hello()))
        reply = await grid.register(
            self.registration_id,
            self.name,
            "producer",
            root=self.publisher.root,
            side_key=self.publisher.side_key,
        )
        self._grid = grid
        self._token = reply.token
        for channel in self._channels.values():
            await self._store_source(channel.registration)

    async def _source_changed(self, registration: SourceRegistration, active: bool) -> None:
        if active and registration.root and registration.side_key:
            self._channels[registration.registration_id] = _SourceChannel(
                registration, Follower(registration.root, registration.side_key)
            )
            if self._grid is not None:
                await self._store_source(registration)
        elif not active:
            self._channels.pop(registration.registration_id, None)
            if self._grid is not None:
                await self._grid.delete_items(
                    self.registration_id,
                    "sources",
                    registration.registration_id,
                    token=self._token,
                )

    async def _store_source(self, registration: SourceRegistration) -> None:
        """Keep the source list in the grid's storage API, as the blueprint suggests."""
        if self._grid is None:
            return
        item = {"itemName": registration.item_name, "itemType": registration.item_type}
        try:
            await self._grid.set_item(
                self.registration_id,
                "sources",
                registration.registration_id,
                item,
                token=self._token,
            )
        except GridApiError as err:
            _LOGGER.warning("%s could not store source %s: %s", self.name, item, err)

    @property
    def source_count(self) -> int:
        return len(self._channels)

    async def collect_sources(self) -> float:
        """kWh reported by the sources' new output messages."""
        total = 0.0
        for channel in self._channels.values():
            for parsed in await channel.follower.read_new(self._client):
                try:
                    message = parse_source_message(parsed.data if parsed.data else parsed.text)
                except (ProtocolError, ValueError):
                    self.skipped_messages += 1
                    continue
                if isinstance(message, SourceOutput):
                    total += message.output
        return round(total, _KWH_DIGITS)

    async def publish(self, period: Period) -> float:
        kwh = await self.collect_sources()
        output = ProducerOutput(
            start_time=period.start_ms,
            end_time=period.end_ms,
            output=kwh,
            producer_price=self.price,
            payment_id_or_address=self.payment_address,
        )
        self.total_kwh += kwh
        await self.publisher.publish(payload_to_json(output))
        return kwh

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class Bill:
    owed: int = 0
    usage_kwh: float = 0.0
    address: str | None = None
    requests: int = 0
    # What is owed minus the payments the grid saw confirming: what to send now.
    due: int = 0


@dataclass
class _Payment:
    amount: int
    tail: str
    sent_at: float
    confirmed: bool = False


class SimConsumer:
    """A household meter: publishes usage, reads its bills and pays them."""

    def __init__(
        self,
        name: str,
        registration_id: str,
        household: Household,
        wallet_seed: str,
        client: IriClient,
        settings: TangleSettings,
        *,
        pay_bills: bool = True,
        payment_cooldown: float = 60.0,
    ) -> None:
        self.name = name
        self.registration_id = registration_id
        self.household = household
        self.wallet_seed = wallet_seed
        self.publisher = Publisher(client, settings)
        self.pay_bills = pay_bills
        self.payment_cooldown = payment_cooldown
        self._client = client
        self._settings = settings
        self._bills: Follower | None = None
        self.bill = Bill()
        self.total_kwh = 0.0
        self.paid = 0
        self.payments: list[_Payment] = []
        self.skipped_messages = 0

    async def register(self, grid: GridClient) -> None:
        await self.publisher.publish(payload_to_json(Hello()))
        reply = await grid.register(
            self.registration_id,
            self.name,
            "consumer",
            root=self.publisher.root,
            side_key=self.publisher.side_key,
        )
        if reply.root is None or reply.side_key is None:
            raise GridApiError("the grid did not return a payment channel for a consumer", 200)
        self._bills = Follower(reply.root, reply.side_key)

    def usage_kwh(self, clock: SimulatedClock, period: Period) -> float:
        return usage_kwh(self.household, clock, period)

    async def publish(self, clock: SimulatedClock, period: Period) -> float:
        kwh = self.usage_kwh(clock, period)
        self.total_kwh += kwh
        await self.publisher.publish(
            payload_to_json(ConsumerUsage(period.start_ms, period.end_ms, kwh))
        )
        return kwh

    async def read_bills(self) -> Bill:
        """Apply new payment requests; the latest one says what is owed now."""
        if self._bills is None:
            return self.bill
        for parsed in await self._bills.read_new(self._client):
            try:
                message = parse_grid_message(parsed.data if parsed.data else parsed.text)
            except (ProtocolError, ValueError):
                self.skipped_messages += 1
                continue
            if isinstance(message, PaymentRequest):
                self.bill = Bill(
                    owed=message.owed,
                    usage_kwh=message.usage,
                    address=message.payment_id_or_address,
                    requests=self.bill.requests + 1,
                    due=message.amount_due,
                )
        return self.bill

    async def _last_payment_settled(self) -> bool:
        if not self.payments:
            return True
        last = self.payments[-1]
        if not last.confirmed:
            states = await self._client.get_inclusion_states([last.tail])
            last.confirmed = bool(states and states[0])
        return last.confirmed and time.monotonic() - last.sent_at >= self.payment_cooldown

    async def pay(self) -> int:
        """Pay what the latest bill says is due; returns the amount sent (0: nothing)."""
        bill = self.bill
        if not self.pay_bills or bill.due <= 0 or bill.address is None:
            return 0
        # The grid counts a payment once the ledger confirms it; until the last one is
        # confirmed and the grid had time to notice, the bill may still include it.
        if not await self._last_payment_settled():
            return 0
        try:
            address = validate_address(bill.address)
        except ProtocolError:
            _LOGGER.warning("%s: the bill's payment id %r is not an address", self.name, bill)
            return 0
        try:
            transactions = await self._client.send_transfer(
                self.wallet_seed,
                [Transfer(address=address, value=bill.due, tag=BILL_TAG)],
                depth=self._settings.depth,
                min_weight_magnitude=self._settings.min_weight_magnitude,
            )
        except InsufficientBalanceError as err:
            _LOGGER.warning("%s cannot pay %d IOTA: %s", self.name, bill.due, err)
            return 0
        tail = next(tx.hash for tx in transactions if tx.current_index == 0)
        self.payments.append(_Payment(bill.due, tail, time.monotonic()))
        self.paid += bill.due
        return bill.due


def _utc(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, UTC)
