"""What the grid's services need of the node client, each capability declared once.

``IriClient`` provides all of them; a service's own protocol names the ones it uses,
so tests can hand it a fake with just those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2p_energy_protocol.transaction import Transaction


class TransactionLookup(Protocol):
    """Finding and reading transactions."""

    async def find_transactions(
        self,
        *,
        addresses: Sequence[str] | None = None,
        bundles: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        approvees: Sequence[str] | None = None,
    ) -> list[str]: ...

    async def get_transactions(self, hashes: Sequence[str]) -> list[Transaction]: ...


class InclusionLookup(Protocol):
    """Whether transactions are confirmed."""

    async def get_inclusion_states(
        self, transactions: Sequence[str], tips: Sequence[str] | None = None
    ) -> list[bool]: ...
