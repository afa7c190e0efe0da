"""The grid's background work as named stages: follow → settle → bill → pay, and collect.

1. ``follow``: read every registered channel through the node, store new readings.
2. ``settle``: settle every slot that is due, one database transaction per slot.
3. ``bill``: publish payment requests for the new bills on the consumers' return
   channels, then the grid's other channel messages (hellos, goodbyes).
4. ``pay``: pay producers' payouts by value bundles (at once after settling); reattach
   and confirm them.
5. ``collect``: find consumers' payments at their payment addresses and confirm
   them (what ``bill`` later asks for is what is still owed).
6. ``addresses``: after the bill stage, derive the next slot's payment addresses
   into the wallet's pool (:meth:`~.wallet.GridWallet.refill_address_pool`).

Only the holder of the leader lease runs the stages (:class:`~.server.GridServer`
repeats each one at its interval); the HTTP API runs in every grid process. Nothing
is settled until every channel was followed up to now: after the grid's start, a
change of leader, or an outage of the node (while the grid cannot read the channels
it settles nothing). That moment is when readings can arrive again, so settlement
deadlines count from it (see :mod:`.settlement.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .billing import PaymentMonitor, PaymentRequests
    from .clock import Clock
    from .config import GridConfig
    from .follower import ChannelFollower
    from .return_channels import ReturnChannels
    from .settlement.service import SettlementService
    from .wallet import GridWallet

# Payment requests created, or outbox messages sent, per step of the bill stage.
PUBLISH_BATCH = 100
CREATE_AHEAD_BATCH = 400
"""Payment requests created per step after the first (which is small, so that proof of
work starts early): creation on the proof-of-work workers waits in their queue behind
the groups being attached, so a step must create more than publishing sends meanwhile
or the workers run out of messages between steps."""


async def create_due_requests(
    requests: PaymentRequests, stopping: asyncio.Event | None = None
) -> None:
    """Create every due payment request, :data:`PUBLISH_BATCH` first, then
    :data:`CREATE_AHEAD_BATCH` at a time, until a step finds fewer due."""
    limit = PUBLISH_BATCH
    while await requests.publish_due(limit) == limit:
        if stopping is not None and stopping.is_set():
            return
        limit = CREATE_AHEAD_BATCH


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: its name (for logs and tasks), its pause between rounds and its work."""

    name: str
    interval: float
    run: Callable[[], Awaitable[Any]]
    wake: asyncio.Event | None = None
    """Set by an earlier stage (or the API) to run this one before its interval is up."""


class GridPipeline:
    """The stages of one grid process, wired to the services they drive."""

    def __init__(
        self,
        config: GridConfig,
        *,
        follower: ChannelFollower,
        settlement: SettlementService,
        requests: PaymentRequests,
        return_channels: ReturnChannels,
        wallet: GridWallet,
        monitor: PaymentMonitor,
        stopping: asyncio.Event,
        clock: Clock,
    ) -> None:
        self._config = config
        self._follower = follower
        self._settlement = settlement
        self._requests = requests
        self._return_channels = return_channels
        self._wallet = wallet
        self._monitor = monitor
        self._stopping = stopping
        self._clock = clock
        self.following_since: int | None = None
        """When the channels were last followed up to now after the grid could not (ms)."""
        self.settle_due = asyncio.Event()
        """Wakes the settle stage: readings were stored."""
        self.bill_due = asyncio.Event()
        """Wakes the bill stage: a slot was settled or a channel message was queued."""
        self.pay_due = asyncio.Event()
        """Wakes the pay stage: a slot was settled, its payouts are due."""
        self.addresses_due = asyncio.Event()
        """Wakes the wallet's address pool refill: the bill stage is done for now."""

    def stages(self) -> tuple[Stage, ...]:
        config = self._config
        return (
            Stage("follow", config.follow_interval / 2, self.follow),
            Stage(
                "settle", max(0.5, min(config.slot_seconds / 4, 30.0)), self.settle, self.settle_due
            ),
            Stage("bill", config.publish_interval, self.bill, self.bill_due),
            Stage("pay", config.payout_interval, self.pay, self.pay_due),
            Stage("collect", config.payments_interval, self.collect),
            Stage("addresses", config.payout_interval, self.addresses, self.addresses_due),
        )

    def became_leader(self) -> None:
        """Settle nothing until the channels were followed up to now once more."""
        self.following_since = None

    async def follow(self) -> None:
        try:
            stats = await self._follower.follow_once()
        except BaseException:
            self.following_since = None
            raise
        if stats.errors:  # the node is unavailable: nothing can be read now
            self.following_since = None
        elif stats.caught_up and self.following_since is None:
            self.following_since = self._clock()
        if stats.readings:
            self.settle_due.set()

    async def settle(self) -> None:
        if self.following_since is None:
            return
        if await self._settlement.settle_due(self.following_since):
            self.bill_due.set()
            self.pay_due.set()

    async def bill(self) -> None:
        """Create the due payment requests and publish the outbox at the same time:
        publishing starts on the first batch while the next ones are created, so
        proof of work and storage overlap with creation (and with each other, see
        :meth:`~.return_channels.ReturnChannels.publish_all`)."""
        creating = asyncio.ensure_future(self._create_requests())
        try:
            await self._return_channels.publish_all(creating, stopping=self._stopping)
            await creating  # its errors are the stage's; publishing stops early on a node failure
        finally:
            if not creating.done():
                creating.cancel()
            # Retrieved either way: when publishing failed as well (a database outage
            # fails both lanes), its error is the stage's and creation's goes with it.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await creating
        self.addresses_due.set()  # idle until the next slot: derive its addresses now

    async def _create_requests(self) -> None:
        await create_due_requests(self._requests, self._stopping)

    async def pay(self) -> None:
        await self._wallet.pay_out()

    async def collect(self) -> None:
        await self._monitor.scan()

    async def addresses(self) -> None:
        await self._wallet.refill_address_pool()
