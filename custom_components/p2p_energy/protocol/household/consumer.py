"""A consumer: publishes its usage, follows the grid's payment requests, pays them.

Every payment is recorded before anything is sent (store before send): the
signed bundle is saved as the pending payment, then attached. A later attempt,
after a lost answer or a restart, attaches the same bundle again; no second
transfer is signed while one is pending, so a bill is never paid twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..address import validate_address
from ..errors import InvalidAddressError, NodeError, PayloadError, ProtocolError
from ..payloads import ConsumerUsage, Goodbye, PaymentRequest, parse_grid_message
from ..signing import generate_address
from ..transfers import TransferNotSentError, TransferState
from .connection import WALLET_SECURITY
from .roles import GridMember
from .state import FollowedChannel, Payment, PendingPayment, ReceivedRequest

if TYPE_CHECKING:
    from datetime import datetime

_LOGGER = logging.getLogger(__name__)


class PaymentRefusedError(Exception):
    """A bill cannot be paid; ``reason`` names why (a translation key in Home Assistant)."""

    def __init__(self, reason: str, placeholders: dict[str, str] | None = None) -> None:
        """Keep the reason and its placeholders for the message."""
        super().__init__(reason)
        self.reason = reason
        self.placeholders = placeholders or {}


class PaymentUncertainError(Exception):
    """The node failed after a payment may have reached it; the payment stays pending."""

    def __init__(self, amount: int, error: ProtocolError) -> None:
        """Keep the amount and the node's (or local proof of work's) error for the message."""
        super().__init__(str(error))
        self.amount = amount
        self.error = error


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What :meth:`Consumer.pay_bill` achieved: a payment and whether it is confirmed."""

    payment: Payment
    confirmed: bool


class Consumer(GridMember):
    """A household meter billed by the grid (and, with a wallet seed, paying its bills)."""

    kind = "consumer"
    item_type = "consumer"
    wallet_balance: int | None = None
    """Confirmed IOTA in the wallet, as of the last sync (None before one succeeded)."""

    @property
    def wallet_seed(self) -> str:
        """The seed of the wallet bills are paid from."""
        if self.config.wallet_seed is None:
            raise PaymentRefusedError("no_wallet")
        return self.config.wallet_seed

    @property
    def wallet_address(self) -> str | None:
        """Where to put IOTA into the wallet: its newest address, never spent from."""
        return self.state.wallet_addresses[-1] if self.state.wallet_addresses else None

    async def _new_wallet_address(self) -> str:
        index = len(self.state.wallet_addresses)
        return await self.household.run(generate_address, self.wallet_seed, index, WALLET_SECURITY)

    async def prepare(self) -> None:
        """Also derive the wallet's first address."""
        await super().prepare()
        if self.config.wallet_seed is not None and not self.state.wallet_addresses:
            self.state.wallet_addresses.append(await self._new_wallet_address())
            await self.household.store.save()

    async def _take_period_locked(self, now: datetime) -> float | None:
        """A consumer reports its usage."""
        return await self._queue_delta_locked(
            now, lambda start, end, kwh: ConsumerUsage(start_time=start, end_time=end, usage=kwh)
        )

    async def _register_locked(self, root: str) -> None:
        reply = await self._grid_register(root)
        if reply.root and reply.side_key:
            current = self.state.return_channel
            if current is None or current.root != reply.root:
                self.state.return_channel = FollowedChannel(
                    root=reply.root, side_key=reply.side_key, next_root=reply.root, name="grid"
                )

    async def sync(self) -> None:
        """Also read the grid's payment requests, a pending payment and the wallet."""
        await super().sync()
        await self._read_return_channel()
        await self.settle_pending_payment()
        if self.state.wallet_addresses:
            balances = await self.household.connection.balances(self.state.wallet_addresses)
            self.wallet_balance = sum(balances)

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
        (the same signed bundle) instead of signing a new transfer.
        """
        async with self.lock:
            if self.state.pending_payment is not None:
                outcome = await self._retry_pending_locked(self.state.pending_payment)
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
        connection = self.household.connection
        # The surplus of the inputs goes to a fresh address, the next deposit address.
        remainder = await self._new_wallet_address()
        signed = await connection.prepare_transfer(self.wallet_seed, address, amount, remainder)
        pending = PendingPayment(
            request_root=received.root,
            amount=amount,
            address=address,
            bundle=signed.bundle_hash,
            time=self.household.clock(),
            trytes=signed.trytes,
        )
        # Recorded before anything leaves: from here on this bill has exactly one bundle.
        self.state.pending_payment = pending
        self.state.wallet_addresses.append(remainder)
        await self.household.store.save()
        try:
            await connection.broadcast_transfer(signed.trytes)
        except TransferNotSentError as err:
            # Nothing reached the node: the next attempt may sign afresh.
            self.state.pending_payment = None
            self.state.wallet_addresses.remove(remainder)
            await self.household.store.save()
            raise err.error from err
        except NodeError as err:
            _LOGGER.warning(
                "%s: the node failed while paying %d IOTA (bundle %s): %s; "
                "the payment is kept pending and will be attached again, never signed anew",
                self.name,
                pending.amount,
                pending.bundle,
                err,
            )
            raise PaymentUncertainError(pending.amount, err) from err
        _LOGGER.info(
            "%s: paid %d IOTA to %s (bundle %s), awaiting confirmation",
            self.name,
            pending.amount,
            address,
            pending.bundle,
        )
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    async def _retry_pending_locked(self, pending: PendingPayment) -> PaymentOutcome:
        """Settle the pending payment, or attach its bundle again."""
        if await self._settle_pending_locked(pending) is TransferState.CONFIRMED:
            return PaymentOutcome(pending.confirmed(), confirmed=True)
        if self.state.pending_payment is None:
            raise PaymentRefusedError("payment_conflicting", {"amount": str(pending.amount)})
        try:
            await self.household.connection.broadcast_transfer(pending.trytes)
        except TransferNotSentError as err:
            raise PaymentUncertainError(pending.amount, err.error) from err
        except NodeError as err:
            raise PaymentUncertainError(pending.amount, err) from err
        _LOGGER.info(
            "%s: attached the pending payment of %d IOTA (bundle %s) again",
            self.name,
            pending.amount,
            pending.bundle,
        )
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    async def _settle_pending_locked(self, pending: PendingPayment) -> TransferState:
        """Record the pending payment as paid once confirmed; drop it if it never can be."""
        state = await self.household.connection.transfer_state(pending.bundle, pending.trytes)
        if state is TransferState.CONFIRMED:
            self.state.payments.append(pending.confirmed())
            self.state.pending_payment = None
            await self.household.store.save()
            _LOGGER.info(
                "%s: payment of %d IOTA confirmed (bundle %s)",
                self.name,
                pending.amount,
                pending.bundle,
            )
        elif state is TransferState.CONFLICTING:
            self.state.pending_payment = None
            await self.household.store.save()
            _LOGGER.warning(
                "%s: the pending payment of %d IOTA (bundle %s) can never confirm: another "
                "transfer spent its wallet addresses; it is dropped and the bill can be paid again",
                self.name,
                pending.amount,
                pending.bundle,
            )
        return state

    async def settle_pending_payment(self) -> None:
        """Check a pending payment on the Tangle (each sync; after a restart too)."""
        async with self.lock:
            pending = self.state.pending_payment
            if pending is None:
                return
            if await self._settle_pending_locked(pending) is TransferState.PENDING:
                return
        self.household.changed()

    def diagnostics(self) -> dict[str, Any]:
        """Also the payments (no wallet secrets)."""
        pending = self.state.pending_payment
        return super().diagnostics() | {
            "payments": len(self.state.payments),
            "paid_total": self.state.paid_total,
            "pending_payment": {
                "amount": pending.amount,
                "bundle": pending.bundle,
                "transactions": len(pending.trytes),
                "time": pending.time.isoformat(),
            }
            if pending
            else None,
        }
