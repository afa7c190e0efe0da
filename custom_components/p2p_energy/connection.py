"""The network side of a grid connection: the grid's APIs and its Tangle node.

:class:`GridConnection` is the one place where the integration talks to the
network, through the protocol library's clients on Home Assistant's shared
aiohttp session. Everything above it (participants, coordinator, services)
only sees these few typed calls and the protocol library's exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .const import MAM_MODE, MAM_TAG, WALLET_SECURITY
from .protocol.client import IriClient, NodeInfo, ProofOfWork, SignedBundle, Transfer
from .protocol.errors import GridApiError, GridUnavailableError, NodeError, NodeUnavailableError
from .protocol.grid_client import GridClient, ItemType, ProducerClient
from .protocol.transfers import TransferLifecycle, TransferState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiohttp import ClientSession
    from homeassistant.core import HomeAssistant

    from .protocol.mam import ChannelEntry, MamMessage


@dataclass(frozen=True, slots=True)
class Registration:
    """What the grid answered to a registration."""

    root: str | None
    """A consumer's return channel (payment requests)."""
    side_key: str | None
    token: str | None
    """Issued once by a grid that uses tokens; later updates and removal need it."""


class GridConnection:
    """Typed access to one grid and its node, sharing Home Assistant's session."""

    def __init__(
        self,
        session: ClientSession,
        grid_url: str,
        node_url: str,
        min_weight_magnitude: int,
        proof_of_work: ProofOfWork | None = None,
    ) -> None:
        """Create the clients; nothing is contacted yet.

        ``proof_of_work`` attaches this household's bundles (a ``LocalProofOfWork``
        in Home Assistant's executor); ``None`` leaves it to the node's attachToTangle.
        """
        self._session = session
        self.grid_url = grid_url
        self.node_url = node_url
        self.min_weight_magnitude = min_weight_magnitude
        self.local_proof_of_work = proof_of_work is not None
        self.iri = IriClient(session, node_url, proof_of_work=proof_of_work)
        self.grid = GridClient(session, grid_url)
        self.transfers = TransferLifecycle(self.iri, min_weight_magnitude=min_weight_magnitude)

    async def node_info(self) -> NodeInfo:
        """The node's getNodeInfo answer; raises NodeError when unreachable."""
        return await self.iri.get_node_info()

    async def grid_health(self) -> dict[str, Any]:
        """The grid's health answer; raises GridApiError when it does not answer."""
        return await self.grid.health()

    async def publish(self, message: MamMessage) -> None:
        """Attach a MAM message (local or remote proof of work) and store it on the node."""
        await self.iri.publish_mam(
            message, tag=MAM_TAG, min_weight_magnitude=self.min_weight_magnitude
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
    ) -> Registration:
        """Register (or re-register) a producer or consumer channel with the grid."""
        reply = await self.grid.register(
            registration_id, item_name, item_type, root=root, side_key=side_key, token=token
        )
        return Registration(reply.root, reply.side_key, reply.token)

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
            [Transfer(address, value, tag=MAM_TAG)],
            security=WALLET_SECURITY,
            remainder_address=remainder_address,
        )

    async def broadcast_transfer(self, trytes: Sequence[str]) -> None:
        """Attach, store and broadcast a signed bundle (see :class:`TransferLifecycle`)."""
        await self.transfers.broadcast(trytes)

    async def transfer_state(self, bundle: str, trytes: Sequence[str]) -> TransferState:
        """Whether any attachment of ``bundle`` is confirmed, or can no longer be."""
        return await self.transfers.state(bundle, trytes)


async def async_test_connection(hass: HomeAssistant, grid_url: str, node_url: str) -> None:
    """Check that ``grid_url`` is a grid and ``node_url`` its node.

    Any failure, including an answer that is not a grid's or a node's, is reported
    as that service being unavailable.
    """
    connection = GridConnection(async_get_clientsession(hass), grid_url, node_url, 9)
    try:
        await connection.grid_health()
    except GridUnavailableError:
        raise
    except GridApiError as err:
        raise GridUnavailableError(err.message, err.status) from err
    try:
        await connection.node_info()
    except NodeUnavailableError:
        raise
    except NodeError as err:
        raise NodeUnavailableError(str(err)) from err
