"""Value transfers from a seed: finding inputs, building and signing, sending.

:class:`WalletOperations` holds the multi-step operations over a node's IRI
commands; :class:`~.client.IriClient` offers them as its own methods. What a
signed bundle goes through afterwards (attach, confirm, reattach) is
:mod:`.transfers`.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from .bundle import BundleBuilder
from .errors import InsufficientBalanceError, ProtocolError
from .signing import generate_addresses

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .client import Balances
    from .transaction import Transaction

# Addresses examined per round trip while looking for inputs.
ADDRESS_BATCH: Final = 10


@dataclass(frozen=True, slots=True)
class Transfer:
    """One output of a transfer: ``value`` IOTA (0 for a message) to ``address``."""

    address: str
    value: int = 0
    tag: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class SignedBundle:
    """A signed bundle not yet attached: its hash and its trytes, head first."""

    bundle_hash: str
    trytes: list[str]


@dataclass(frozen=True, slots=True)
class WalletInput:
    address: str
    balance: int
    key_index: int
    security: int


async def off_loop[**P, R](func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run CPU-bound key work (Kerl addresses, signing) in the loop's default executor,
    so an event loop shared with Home Assistant or the grid's API stays responsive."""
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


class WalletNode(Protocol):
    """The IRI commands the wallet operations are built on."""

    async def get_balances(
        self, addresses: Sequence[str], tips: Sequence[str] | None = None
    ) -> Balances: ...

    async def were_addresses_spent_from(self, addresses: Sequence[str]) -> list[bool]: ...

    async def find_transactions(self, *, addresses: Sequence[str]) -> list[str]: ...

    async def send_trytes(
        self,
        trytes: Sequence[str],
        depth: int = 3,
        min_weight_magnitude: int = 9,
        reference: str | None = None,
    ) -> list[Transaction]: ...


class WalletOperations(WalletNode):
    """Finding inputs, preparing and sending transfers, over :class:`WalletNode`'s commands."""

    async def find_inputs(
        self, seed: str, amount: int, *, security: int = 2, start_index: int = 0
    ) -> tuple[list[WalletInput], int]:
        """Addresses of ``seed`` whose confirmed balances cover ``amount``.

        Scans key indexes from ``start_index`` until the balance suffices or an address
        was never used. Addresses already spent from are skipped: signing twice with
        one key weakens it. Returns the inputs and the first unused key index (for the
        remainder).
        """
        inputs: list[WalletInput] = []
        total = 0
        index = start_index
        while True:
            addresses = await off_loop(generate_addresses, seed, index, ADDRESS_BATCH, security)
            balances = (await self.get_balances(addresses)).balances
            spent = await self.were_addresses_spent_from(addresses)
            for offset, address in enumerate(addresses):
                key_index = index + offset
                if spent[offset]:
                    continue
                if balances[offset] > 0:
                    if total < amount:
                        inputs.append(WalletInput(address, balances[offset], key_index, security))
                        total += balances[offset]
                    continue
                if not await self.find_transactions(addresses=[address]):
                    if total < amount:
                        raise InsufficientBalanceError(
                            f"the seed's addresses hold {total} confirmed IOTA, {amount} are needed"
                        )
                    return inputs, key_index
            index += ADDRESS_BATCH

    async def prepare_transfer(
        self,
        seed: str,
        transfers: Sequence[Transfer],
        *,
        security: int = 2,
        remainder_address: str | None = None,
        start_index: int = 0,
    ) -> SignedBundle:
        """Build and sign, without sending, a bundle paying ``transfers`` from ``seed``.

        Inputs are the seed's confirmed balances; any surplus goes to
        ``remainder_address`` or to the seed's next unused address. A caller that
        must never pay twice records the result before :meth:`send_trytes`, and
        sends the same trytes again after an ambiguous failure.
        """
        if not transfers:
            raise ProtocolError("a transfer needs at least one output")
        amount = sum(transfer.value for transfer in transfers)
        if any(transfer.value < 0 for transfer in transfers):
            raise ProtocolError("transfer values cannot be negative")
        inputs: list[WalletInput] = []
        unused_index = start_index
        if amount > 0:
            inputs, unused_index = await self.find_inputs(
                seed, amount, security=security, start_index=start_index
            )

        def build_and_sign() -> SignedBundle:
            builder = BundleBuilder()
            for transfer in transfers:
                builder.add_transfer(
                    transfer.address,
                    transfer.value,
                    tag=transfer.tag,
                    message_trytes=transfer.message,
                )
            for item in inputs:
                builder.add_input(item.address, item.balance, item.key_index, item.security)
            if sum(item.balance for item in inputs) > amount:
                remainder = (
                    remainder_address or generate_addresses(seed, unused_index, 1, security)[0]
                )
                builder.add_remainder(remainder)
            builder.finalize()
            if amount > 0:
                builder.sign(seed)
            return SignedBundle(builder.bundle_hash, builder.to_trytes())

        return await off_loop(build_and_sign)

    async def send_transfer(
        self,
        seed: str,
        transfers: Sequence[Transfer],
        *,
        security: int = 2,
        remainder_address: str | None = None,
        depth: int = 3,
        min_weight_magnitude: int = 9,
        start_index: int = 0,
    ) -> list[Transaction]:
        """Build, sign and send a bundle paying ``transfers`` from ``seed``'s addresses
        (see :meth:`prepare_transfer`). Returns the attached transactions, tail first."""
        signed = await self.prepare_transfer(
            seed,
            transfers,
            security=security,
            remainder_address=remainder_address,
            start_index=start_index,
        )
        return await self.send_trytes(signed.trytes, depth, min_weight_magnitude)
