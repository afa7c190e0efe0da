"""The network side of a household: the grid's APIs, its node, producers' APIs.

:class:`GridConnection` is the one place where a household talks to the
network, through the protocol library's clients on an injected aiohttp session.
The roles above it only see these few typed calls and the library's exceptions
(so tests can stand in a fake network with the same calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..client import IriClient, NodeInfo
from ..grid_client import GridClient, ItemType, ProducerClient, RegistrationReply
from ..transfers import TransferLifecycle, TransferState
from ..wallet import SignedBundle, Transfer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiohttp import ClientSession

    from ..mam import ChannelEntry, MamMessage
    from ..price_forecast import PriceForecast
    from ..proof_of_work import ProofOfWork

MAM_MODE: Final = "restricted"
MAM_SECURITY: Final = 2
WALLET_SECURITY: Final = 2
HOUSEHOLD_TAG: Final = "PEERTOPEERENERGY"
"""Tag of every bundle a household attaches (27 trytes at most)."""


class GridConnection:
    """Typed access to one grid and its node over one aiohttp session."""

    def __init__(
        self,
        session: ClientSession,
        grid_url: str,
        node_url: str,
        min_weight_magnitude: int,
        proof_of_work: ProofOfWork | None = None,
        *,
        tag: str = HOUSEHOLD_TAG,
        depth: int = 3,
    ) -> None:
        """Create the clients; nothing is contacted yet.

        ``proof_of_work`` attaches this household's bundles (a ``LocalProofOfWork``
        in an executor); ``None`` leaves it to the node's attachToTangle.
        """
        self._session = session
        self.grid_url = grid_url
        self.node_url = node_url
        self.min_weight_magnitude = min_weight_magnitude
        self.local_proof_of_work = proof_of_work is not None
        self.tag = tag
        self.depth = depth
        self.iri = IriClient(session, node_url, proof_of_work=proof_of_work)
        self.grid = GridClient(session, grid_url)
        self.transfers = TransferLifecycle(
            self.iri, min_weight_magnitude=min_weight_magnitude, depth=depth
        )

    async def node_info(self) -> NodeInfo:
        """The node's getNodeInfo answer; raises NodeError when unreachable."""
        return await self.iri.get_node_info()

    async def grid_health(self) -> dict[str, Any]:
        """The grid's health answer; raises GridApiError when it does not answer."""
        return await self.grid.health()

    async def price_forecast(self) -> PriceForecast:
        """The grid's price forecast; raises GridApiError when it does not answer."""
        return await self.grid.price_forecast()

    async def publish(self, message: MamMessage) -> None:
        """Attach a MAM message (local or remote proof of work) and store it on the node."""
        await self.iri.publish_mam(
            message, tag=self.tag, depth=self.depth, min_weight_magnitude=self.min_weight_magnitude
        )

    async def read_channel(
        self, root: str, side_key: str, limit: int | None = None
    ) -> list[ChannelEntry]:
        """Messages of a restricted channel from ``root`` on, in channel order."""
        return await self.iri.fetch_mam(root, MAM_MODE, side_key, limit=limit)

    async def register(
        self,
        registration_id: str,
        item_name: str,
        item_type: ItemType,
        root: str,
        side_key: str,
        token: str | None,
        max_price: float | None = None,
    ) -> RegistrationReply:
        """Register (or re-register) a producer or consumer channel with the grid.

        ``max_price`` is a consumer's standing bid (IOTA per kWh; None: no bid).
        """
        return await self.grid.register(
            registration_id,
            item_name,
            item_type,
            root=root,
            side_key=side_key,
            token=token,
            max_price=max_price,
        )

    async def deregister(self, registration_id: str, side_key: str, token: str | None) -> None:
        """Remove a registration from the grid."""
        await self.grid.deregister(registration_id, side_key, token=token)

    async def register_source(
        self,
        producer_url: str,
        registration_id: str,
        item_name: str,
        root: str,
        side_key: str,
    ) -> None:
        """Register a source with a producer's registration API."""
        await ProducerClient(self._session, producer_url).register(
            registration_id, item_name=item_name, item_type="source", root=root, side_key=side_key
        )

    async def deregister_source(
        self, producer_url: str, registration_id: str, side_key: str
    ) -> None:
        """Remove a source's registration from a producer."""
        await ProducerClient(self._session, producer_url).deregister(registration_id, side_key)

    async def store_item(
        self, registration_id: str, context: str, item_id: str, item: Any, token: str | None
    ) -> None:
        """Keep ``item`` in the grid's storage API under the registration."""
        await self.grid.set_item(registration_id, context, item_id, item, token=token)

    async def delete_item(
        self, registration_id: str, context: str, item_id: str, token: str | None
    ) -> None:
        """Remove an item from the grid's storage API."""
        await self.grid.delete_items(registration_id, context, item_id, token=token)

    async def balances(self, addresses: Sequence[str]) -> list[int]:
        """Confirmed balances of ``addresses``."""
        return (await self.iri.get_balances(list(addresses))).balances

    async def prepare_transfer(
        self, seed: str, address: str, value: int, remainder_address: str
    ) -> SignedBundle:
        """Sign a bundle paying ``value`` IOTA from ``seed``'s wallet to ``address``.

        Nothing is sent: the caller records the bundle before broadcasting it,
        so an interrupted payment is sent again, never signed anew. Any surplus
        of the inputs goes to ``remainder_address``.
        """
        return await self.iri.prepare_transfer(
            seed,
            [Transfer(address, value, tag=self.tag)],
            security=WALLET_SECURITY,
            remainder_address=remainder_address,
        )

    async def broadcast_transfer(self, trytes: Sequence[str]) -> None:
        """Attach, store and broadcast a signed bundle (see :class:`TransferLifecycle`)."""
        await self.transfers.broadcast(trytes)

    async def transfer_state(self, bundle: str, trytes: Sequence[str]) -> TransferState:
        """Whether any attachment of ``bundle`` is confirmed, or can no longer be."""
        return await self.transfers.state(bundle, trytes)
