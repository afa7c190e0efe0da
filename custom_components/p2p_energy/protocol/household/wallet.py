"""The wallet of a producer or consumer: its addresses, balance and outgoing transfers.

A producer is paid into its wallet, a consumer pays its bills from it, and both
may send IOTA from it to any address. Every outgoing transfer takes the same
path (store before send): the signed bundle is saved as the pending transfer,
then attached. A later attempt, after a lost answer or a restart, attaches the
same bundle again; no second transfer is signed while one is pending, so
nothing is ever paid or sent twice.

Addresses are used in key-index order: ``wallet_addresses[i]`` is key index
``i``. The newest one is where IOTA comes in (a consumer's deposit address, a
producer's payment address); each transfer's change goes to a fresh one, which
becomes the newest, so an address spent from never receives again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..address import validate_address
from ..errors import InvalidAddressError, NodeError, ProtocolError
from ..signing import generate_address
from ..transfers import TransferNotSentError, TransferState
from .connection import WALLET_SECURITY
from .roles import GridMember
from .state import Payment, PendingPayment

_LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Mapping


class PaymentRefusedError(Exception):
    """A transfer cannot be made; ``reason`` names why (a translation key in Home Assistant)."""

    def __init__(self, reason: str, placeholders: Mapping[str, str] | None = None) -> None:
        """Keep the reason and its placeholders for the message."""
        super().__init__(reason)
        self.reason = reason
        self.placeholders = dict(placeholders or {})


class PaymentUncertainError(Exception):
    """The node failed after a transfer may have reached it; the transfer stays pending."""

    def __init__(self, amount: int, error: ProtocolError) -> None:
        """Keep the amount and the node's (or local proof of work's) error for the message."""
        super().__init__(str(error))
        self.amount = amount
        self.error = error


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What a transfer achieved: the payment and whether it is confirmed."""

    payment: Payment
    confirmed: bool


class WalletMember(GridMember):
    """A producer or consumer with a wallet (its seed is in the configuration)."""

    wallet_balance: int | None = None
    """Confirmed IOTA on the wallet's addresses, as of the last sync (None before one
    succeeded, or without a wallet)."""
    address_balances: list[int] | None = None
    """The confirmed balance of each wallet address, as of the last sync."""

    @property
    def has_wallet(self) -> bool:
        """Whether the participant has a wallet seed."""
        return self.config.wallet_seed is not None

    @property
    def spare_balance(self) -> int | None:
        """Confirmed IOTA that nothing in flight or owed needs (None when unknown)."""
        if self.wallet_balance is None:
            return None
        pending = self.state.pending_payment
        return max(self.wallet_balance - (pending.amount if pending else 0) - self.amount_due, 0)

    @property
    def amount_due(self) -> int:
        """IOTA a bill still asks this wallet for (a consumer's; nothing for a producer)."""
        return 0

    @property
    def wallet_seed(self) -> str:
        """The seed of the wallet (refused without one)."""
        if self.config.wallet_seed is None:
            raise PaymentRefusedError("no_wallet")
        return self.config.wallet_seed

    @property
    def wallet_address(self) -> str | None:
        """Where IOTA comes into the wallet: its newest address, never spent from."""
        return self.state.wallet_addresses[-1] if self.state.wallet_addresses else None

    async def _new_wallet_address(self) -> str:
        index = len(self.state.wallet_addresses)
        return await self.household.run(generate_address, self.wallet_seed, index, WALLET_SECURITY)

    async def prepare(self) -> None:
        """Also derive the wallet's first address (key index 0)."""
        await super().prepare()
        if self.has_wallet and not self.state.wallet_addresses:
            self.state.wallet_addresses.append(await self._new_wallet_address())
            await self.household.store.save()

    async def sync(self) -> None:
        """Also settle a pending transfer and read the wallet's balance."""
        await super().sync()
        await self.settle_pending_payment()
        await self.read_balance()

    async def read_balance(self) -> int | None:
        """Read the confirmed balance of the wallet's addresses (None without a wallet)."""
        if not self.state.wallet_addresses:
            return None
        balances = await self.household.connection.balances(self.state.wallet_addresses)
        self.address_balances = balances
        self.wallet_balance = sum(balances)
        return self.wallet_balance

    # Sending ----------------------------------------------------------------

    async def send(self, address: str, amount: int) -> PaymentOutcome:
        """Send ``amount`` IOTA from the wallet to ``address`` (81 trytes, or 90 with checksum).

        Refused (:class:`PaymentRefusedError`) for a bad address or amount, more
        than the confirmed balance, or while an earlier transfer is unconfirmed.
        """
        try:
            target = validate_address(address, for_value=True)
        except InvalidAddressError as err:
            raise PaymentRefusedError("invalid_address", {"address": address}) from err
        if amount <= 0:
            raise PaymentRefusedError("invalid_amount", {"amount": str(amount)})
        async with self.lock:
            if target in self.state.wallet_addresses:
                raise PaymentRefusedError("own_address", {"address": target})
            pending = self.state.pending_payment
            if pending is not None and await self._still_pending_locked(pending):
                raise PaymentRefusedError(
                    "transfer_pending", {"amount": str(pending.amount), "bundle": pending.bundle}
                )
            balance = await self.read_balance()
            if balance is None:
                raise PaymentRefusedError("no_wallet")
            if amount > balance:
                raise PaymentRefusedError(
                    "amount_above_balance", {"amount": str(amount), "balance": str(balance)}
                )
            outcome = await self._transfer_locked(target, amount, None)
        self.household.changed()
        return outcome

    async def _still_pending_locked(self, pending: PendingPayment) -> bool:
        """Settle ``pending``; when it still waits for a milestone, attach it again."""
        if await self._settle_pending_locked(pending) is not TransferState.PENDING:
            return False
        await self._reattach_locked(pending)
        return True

    async def _transfer_locked(
        self, address: str, amount: int, request_root: str | None
    ) -> PaymentOutcome:
        """Sign, record, then attach a transfer of ``amount`` IOTA to ``address``.

        ``request_root`` names the payment request a bill payment pays (None for a
        plain send). Recorded before anything leaves: from then on the transfer has
        exactly one bundle.
        """
        connection = self.household.connection
        # The surplus of the inputs goes to a fresh address, the next incoming address.
        remainder = await self._new_wallet_address()
        signed = await connection.prepare_transfer(self.wallet_seed, address, amount, remainder)
        pending = PendingPayment(
            request_root=request_root,
            amount=amount,
            address=address,
            bundle=signed.bundle_hash,
            time=self.household.clock(),
            trytes=signed.trytes,
        )
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
                "%s: the node failed while sending %d IOTA (bundle %s): %s; "
                "the transfer is kept pending and will be attached again, never signed anew",
                self.name,
                pending.amount,
                pending.bundle,
                err,
            )
            raise PaymentUncertainError(pending.amount, err) from err
        _LOGGER.info(
            "%s: sent %d IOTA to %s (bundle %s), awaiting confirmation",
            self.name,
            pending.amount,
            address,
            pending.bundle,
        )
        return PaymentOutcome(pending.confirmed(), confirmed=False)

    async def _reattach_locked(self, pending: PendingPayment) -> None:
        """Attach the pending transfer's signed bundle again (never a new signature)."""
        try:
            await self.household.connection.broadcast_transfer(pending.trytes)
        except TransferNotSentError as err:
            raise PaymentUncertainError(pending.amount, err.error) from err
        except NodeError as err:
            raise PaymentUncertainError(pending.amount, err) from err
        _LOGGER.info(
            "%s: attached the pending transfer of %d IOTA (bundle %s) again",
            self.name,
            pending.amount,
            pending.bundle,
        )

    async def _settle_pending_locked(self, pending: PendingPayment) -> TransferState:
        """Record the pending transfer once confirmed; drop it if it never can be."""
        state = await self.household.connection.transfer_state(pending.bundle, pending.trytes)
        if state is TransferState.CONFIRMED:
            done = self.state.payments if pending.request_root is not None else self.state.sent
            done.append(pending.confirmed())
            self.state.pending_payment = None
            await self.household.store.save()
            _LOGGER.info(
                "%s: transfer of %d IOTA confirmed (bundle %s)",
                self.name,
                pending.amount,
                pending.bundle,
            )
        elif state is TransferState.CONFLICTING:
            self.state.pending_payment = None
            await self.household.store.save()
            _LOGGER.warning(
                "%s: the pending transfer of %d IOTA (bundle %s) can never confirm: another "
                "transfer spent its wallet addresses; it is dropped and can be made again",
                self.name,
                pending.amount,
                pending.bundle,
            )
        return state

    async def settle_pending_payment(self) -> None:
        """Check a pending transfer on the Tangle (each sync; after a restart too)."""
        async with self.lock:
            pending = self.state.pending_payment
            if pending is None:
                return
            if await self._settle_pending_locked(pending) is TransferState.PENDING:
                return
        self.household.changed()

    def wallet_diagnostics(self) -> dict[str, object]:
        """The wallet's public facts (no seed, no signed trytes)."""
        pending = self.state.pending_payment
        return {
            "wallet_addresses": len(self.state.wallet_addresses),
            "wallet_balance": self.wallet_balance,
            "sent": len(self.state.sent),
            "pending_payment": {
                "amount": pending.amount,
                "bundle": pending.bundle,
                "transactions": len(pending.trytes),
                "time": pending.time.isoformat(),
            }
            if pending
            else None,
        }
