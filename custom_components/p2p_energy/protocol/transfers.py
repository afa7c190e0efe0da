"""The life of a signed value bundle: attach, confirm, attach again.

Whoever pays (a household's consumer, the grid's wallet) signs a bundle,
records it, and only then hands it to :meth:`TransferLifecycle.broadcast`, so
an interrupted payment is attached again, never signed anew with other inputs.
:meth:`TransferLifecycle.state` says whether any attachment of the bundle is
confirmed, still may be, or never can be because its inputs were spent by
another bundle. Reattaching is :meth:`~TransferLifecycle.broadcast` of the
same trytes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from .errors import ProtocolError
from .transaction import Transaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .client import Balances, TipPair

TIP_DEPTH: Final = 3
"""Milestones back from which tips are chosen (the original clients' setting)."""


class TransferNotSentError(Exception):
    """A signed bundle certainly did not reach the node: nothing was stored.

    The caller may drop the bundle and sign afresh.
    """

    def __init__(self, error: ProtocolError) -> None:
        """Keep the node's (or the local proof of work's) error for the message."""
        super().__init__(str(error))
        self.error = error


class TransferState(StrEnum):
    """Where a signed bundle stands on the Tangle."""

    CONFIRMED = "confirmed"
    PENDING = "pending"
    """Not confirmed (perhaps not even seen) but still able to confirm."""
    CONFLICTING = "conflicting"
    """Its inputs were spent by another bundle: it can never confirm."""


class TransferNode(Protocol):
    """What the lifecycle needs of a node client (``IriClient`` provides it)."""

    async def get_transactions_to_approve(
        self, depth: int, reference: str | None = None
    ) -> TipPair: ...

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]: ...

    async def store_transactions(self, trytes: Sequence[str]) -> None: ...

    async def broadcast_transactions(self, trytes: Sequence[str]) -> None: ...

    async def get_balances(
        self, addresses: Sequence[str], tips: Sequence[str] | None = None
    ) -> Balances: ...

    async def find_transactions(self, *, bundles: Sequence[str]) -> list[str]: ...

    async def get_transactions(self, hashes: Sequence[str]) -> list[Transaction]: ...

    async def get_inclusion_states(
        self, transactions: Sequence[str], tips: Sequence[str] | None = None
    ) -> list[bool]: ...


class TransferLifecycle:
    """Attaches recorded value bundles and follows them until they confirm."""

    def __init__(
        self, node: TransferNode, *, min_weight_magnitude: int = 9, depth: int = TIP_DEPTH
    ) -> None:
        """Attach at ``min_weight_magnitude`` on tips ``depth`` milestones back."""
        self._node = node
        self.min_weight_magnitude = min_weight_magnitude
        self.depth = depth

    async def broadcast(self, trytes: Sequence[str]) -> list[str]:
        """Attach (the node's or the client's proof of work), store and broadcast a
        signed bundle (trytes in attach order, highest index first); returns this
        attachment's trytes, tail first.

        Raises :class:`TransferNotSentError` when the node certainly stored nothing
        (no tips, or proof of work failed on the node or locally); a
        :class:`~.errors.NodeError` while storing or broadcasting leaves it open
        whether the node took the bundle.
        """
        try:
            tips = await self._node.get_transactions_to_approve(self.depth)
            attached = await self._node.attach(
                tips.trunk, tips.branch, self.min_weight_magnitude, trytes
            )
        except ProtocolError as err:  # a NodeError, or the local search refused the bundle
            raise TransferNotSentError(err) from err
        await self._node.store_transactions(attached)
        await self._node.broadcast_transactions(attached)
        return attached

    async def state(self, bundle: str, trytes: Sequence[str]) -> TransferState:
        """Whether any attachment of ``bundle`` is confirmed, or can no longer be.

        Balances are read before the inclusion states: inputs found spent while
        none of the bundle's tails is confirmed afterwards were spent by another
        bundle, so this one can never confirm.
        """
        inputs = [
            transaction
            for transaction in map(Transaction.from_trytes, trytes)
            if transaction.value < 0
        ]
        balances = (
            (await self._node.get_balances([item.address for item in inputs])).balances
            if inputs
            else []
        )
        hashes = await self._node.find_transactions(bundles=[bundle])
        tails = [
            transaction.hash
            for transaction in await self._node.get_transactions(hashes)
            if transaction.bundle == bundle and transaction.is_tail
        ]
        if tails and any(await self._node.get_inclusion_states(tails)):
            return TransferState.CONFIRMED
        if any(
            balance < -transaction.value
            for balance, transaction in zip(balances, inputs, strict=True)
        ):
            return TransferState.CONFLICTING
        return TransferState.PENDING
