"""A consumer: publishes its usage, follows the grid's payment requests, pays them.

A bill is paid like every transfer from a wallet (:mod:`.wallet`): recorded
before anything is sent, attached again (never signed anew) after a lost answer
or a restart, so a bill is never paid twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..address import validate_address
from ..errors import GridApiError, GridUnavailableError, InvalidAddressError, PayloadError
from ..payloads import (
    ConsumerUsage,
    Goodbye,
    PaymentRequest,
    optional_price,
    parse_grid_message,
)
from ..transfers import TransferState
from .state import FollowedChannel, ReceivedRequest
from .wallet import PaymentOutcome, PaymentRefusedError, WalletMember

if TYPE_CHECKING:
    from datetime import datetime

    from .state import PendingPayment

_LOGGER = logging.getLogger(__name__)


class Consumer(WalletMember):
    """A household meter billed by the grid (and, with a wallet seed, paying its bills)."""

    kind = "consumer"
    item_type = "consumer"

    @property
    def bid(self) -> float | None:
        """The most it pays per kWh of local energy (IOTA), None without a (valid) bid."""
        return optional_price(self.config.max_price)

    async def _take_period_locked(self, now: datetime) -> float | None:
        """A consumer reports its usage (with its bid, when it has one)."""
        bid = self.bid
        return await self._queue_delta_locked(
            now,
            lambda start, end, kwh: ConsumerUsage(
                start_time=start, end_time=end, usage=kwh, max_price=bid
            ),
        )

    async def _register_locked(self, root: str) -> None:
        # The registration carries the standing bid; each usage repeats it for its period.
        bid = self.bid
        reply = await self._grid_register(root, bid)
        self.state.registered_bid = bid
        if reply.root and reply.side_key:
            current = self.state.return_channel
            if current is None or current.root != reply.root:
                self.state.return_channel = FollowedChannel(
                    root=reply.root, side_key=reply.side_key, next_root=reply.root, name="grid"
                )

    async def sync(self) -> None:
        """Also restate a changed bid and read the grid's payment requests."""
        await super().sync()
        await self._restate_bid()
        await self._read_return_channel()

    async def _restate_bid(self) -> None:
        """Register again when the bid changed since the registration (a reconfigure).

        The grid falls back to the standing bid for usages without one, so a removed
        bid must not stay standing there.
        """
        async with self.lock:
            if not self.registered or self.state.registered_bid == self.bid:
                return
            assert self.channel_root is not None
            try:
                await self._register_locked(self.channel_root)
            except GridUnavailableError:
                raise  # the owner reports the grid unreachable; retried next sync
            except GridApiError as err:
                self._note_registration_problem(err.message)
                return
            self.registration_problem = None
            await self.household.store.save()

    async def _read_return_channel(self) -> None:
        channel = self.state.return_channel
        if channel is None or channel.ended:
            return
        messages = await self.household.connection.read_channel(channel.next_root, channel.side_key)
        if not messages:
            return
        for message in messages:
            try:
                payload = parse_grid_message(message.data)
            except PayloadError as err:
                _LOGGER.warning(
                    "%s: skipping unreadable grid message at %s: %s", self.name, message.root, err
                )
            else:
                if isinstance(payload, PaymentRequest):
                    self.state.payment_request = ReceivedRequest(message.root, payload)
                elif isinstance(payload, Goodbye):
                    channel.ended = True
            channel.next_root = message.next_root
        await self.household.store.save()
        self.household.changed()

    async def pay_bill(self) -> PaymentOutcome:
        """Pay the latest payment request from the wallet, once.

        While an earlier payment is pending, it is checked and attached again
        (the same signed bundle) instead of signing a new transfer; while a
        plain send is pending, the bill waits for it.
        """
        async with self.lock:
            pending = self.state.pending_payment
            if pending is None:
                outcome = await self._pay_locked()
            elif pending.request_root is not None:
                outcome = await self._retry_pending_locked(pending)
            elif await self._still_pending_locked(pending):
                raise PaymentRefusedError(
                    "transfer_pending", {"amount": str(pending.amount), "bundle": pending.bundle}
                )
            else:
                outcome = await self._pay_locked()
        self.household.changed()
        return outcome

    async def _pay_locked(self) -> PaymentOutcome:
        received = self.state.payment_request
        if received is None or received.request.owed <= 0:
            raise PaymentRefusedError("nothing_owed")
        request = received.request
        if any(payment.request_root == received.root for payment in self.state.payments):
            raise PaymentRefusedError("already_paid", {"amount": str(request.owed)})
        # Payments the grid saw but the ledger has not confirmed are not paid again.
        amount = request.amount_due
        if amount <= 0:
            raise PaymentRefusedError("payment_confirming", {"amount": str(request.pending)})
        try:
            address = validate_address(request.payment_id_or_address)
        except InvalidAddressError as err:
            raise PaymentRefusedError(
                "payment_reference", {"reference": request.payment_id_or_address}
            ) from err
        return await self._transfer_locked(address, amount, received.root)

    async def _retry_pending_locked(self, pending: PendingPayment) -> PaymentOutcome:
        """Settle the pending payment, or attach its bundle again."""
        if await self._settle_pending_locked(pending) is TransferState.CONFIRMED:
            return PaymentOutcome(pending.confirmed(), confirmed=True)
        if self.state.pending_payment is None:
            raise PaymentRefusedError("payment_conflicting", {"amount": str(pending.amount)})
        await self._reattach_locked(pending)
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    @property
    def amount_due(self) -> int:
        """IOTA the latest payment request still asks for (0 when paid or none)."""
        received = self.state.payment_request
        if received is None or any(
            payment.request_root == received.root for payment in self.state.payments
        ):
            return 0
        return max(received.request.amount_due, 0)

    def diagnostics(self) -> dict[str, Any]:
        """Also the payments and the wallet (no wallet secrets)."""
        return (
            super().diagnostics()
            | self.wallet_diagnostics()
            | {"payments": len(self.state.payments), "paid_total": self.state.paid_total}
        )
