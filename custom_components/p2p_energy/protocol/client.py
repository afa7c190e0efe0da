"""Async client of the legacy IRI HTTP API, with MAM and value-transfer helpers.

The caller injects the ``aiohttp.ClientSession`` (Home Assistant's shared
session, the grid server's, a test's). A node's refusal raises
:class:`~.errors.IriApiError`; an unreachable or non-IRI endpoint raises
:class:`~.errors.NodeUnavailableError`.

Proof of work runs on the node (``attachToTangle``) unless the client is given a
:class:`~.proof_of_work.ProofOfWork` strategy such as
:class:`~.proof_of_work.LocalProofOfWork`, which does it in an executor of the
caller (a process pool, Home Assistant's thread executor). The value transfers
(inputs, signing, sending) are :class:`~.wallet.WalletOperations`, which the
client inherits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from .errors import IriApiError, NodeUnavailableError, ProtocolError
from .mam import (
    ChannelEntry,
    MamMessage,
    MamMode,
    message_to_transactions,
    messages_to_transactions,
    walk_channels,
)
from .proof_of_work import LocalProofOfWork, MessageProofOfWork, ProofOfWork
from .transaction import TRANSACTION_LENGTH, Transaction
from .wallet import SignedBundle, Transfer, WalletInput, WalletOperations, off_loop

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# Re-exported: what callers need to construct a client and call its wallet operations.
__all__ = [
    "API_VERSION_HEADER",
    "BATCH_SIZE",
    "EMPTY_TRYTES",
    "Balances",
    "IriClient",
    "LocalProofOfWork",
    "NodeInfo",
    "ProofOfWork",
    "SignedBundle",
    "TipPair",
    "Transfer",
    "WalletInput",
]

API_VERSION_HEADER: Final = "X-IOTA-API-Version"
# What getTrytes answers for a hash the node does not hold.
EMPTY_TRYTES: Final = "9" * TRANSACTION_LENGTH
# Items per request for list parameters; IRI's default maxRequestsList.
BATCH_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The parts of ``getNodeInfo`` clients act on (``raw`` holds everything)."""

    app_name: str
    app_version: str
    latest_milestone: str
    latest_milestone_index: int
    latest_solid_milestone: str
    latest_solid_milestone_index: int
    neighbors: int
    tips: int
    coordinator_address: str | None
    raw: dict[str, Any]

    @property
    def is_synced(self) -> bool:
        return self.latest_solid_milestone_index >= self.latest_milestone_index > 0


@dataclass(frozen=True, slots=True)
class Balances:
    balances: list[int]
    references: list[str]
    milestone_index: int


@dataclass(frozen=True, slots=True)
class TipPair:
    trunk: str
    branch: str


def _batches[T](items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _require(body: dict[str, Any], key: str, kind: type, command: str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NodeUnavailableError(f"{command}: the node's answer lacks a valid {key!r}")
    return value


class IriClient(WalletOperations):
    """One typed method per IRI command, plus the multi-step operations (the value
    transfers among them are :class:`~.wallet.WalletOperations`).

    ``proof_of_work`` decides where the multi-step operations (:meth:`send_trytes`
    and everything built on it) attach: ``None`` asks the node (``attachToTangle``,
    remote proof of work), a :class:`ProofOfWork` such as :class:`LocalProofOfWork`
    does it itself and only stores and broadcasts on the node.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
        proof_of_work: ProofOfWork | None = None,
    ) -> None:
        self._session = session
        self._proof_of_work = proof_of_work
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {API_VERSION_HEADER: "1", "Content-Type": "application/json"}
        if headers:
            self._headers.update(headers)

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        """Send one command; return the answer's JSON object."""
        body = json.dumps({"command": command, **params}, separators=(",", ":"))
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise NodeUnavailableError(
                f"{command}: node {self.url} is unreachable: {err!r}"
            ) from err
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise NodeUnavailableError(
                f"{command}: node {self.url} answered HTTP {status} without an IRI JSON object"
            )
        if status >= 400:
            message = answer.get("error") or answer.get("exception") or f"HTTP {status}"
            raise IriApiError(command, status, str(message))
        return answer

    # -- commands ----------------------------------------------------------------

    async def get_node_info(self) -> NodeInfo:
        body = await self.call("getNodeInfo")
        name = "getNodeInfo"
        return NodeInfo(
            app_name=str(body.get("appName", "")),
            app_version=str(body.get("appVersion", "")),
            latest_milestone=_require(body, "latestMilestone", str, name),
            latest_milestone_index=_require(body, "latestMilestoneIndex", int, name),
            latest_solid_milestone=_require(body, "latestSolidSubtangleMilestone", str, name),
            latest_solid_milestone_index=_require(
                body, "latestSolidSubtangleMilestoneIndex", int, name
            ),
            neighbors=int(body.get("neighbors", 0)),
            tips=int(body.get("tips", 0)),
            coordinator_address=body.get("coordinatorAddress"),
            raw=body,
        )

    async def get_tips(self) -> list[str]:
        return list(_require(await self.call("getTips"), "hashes", list, "getTips"))

    async def find_transactions(
        self,
        *,
        addresses: Sequence[str] | None = None,
        bundles: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        approvees: Sequence[str] | None = None,
    ) -> list[str]:
        """Hashes matching every given field (any value within a field)."""
        fields = {
            key: list(values)
            for key, values in (
                ("addresses", addresses),
                ("bundles", bundles),
                ("tags", tags),
                ("approvees", approvees),
            )
            if values is not None
        }
        if not fields:
            raise ProtocolError("find_transactions needs addresses, bundles, tags or approvees")
        if len(fields) == 1:
            ((key, values),) = fields.items()
            found: list[str] = []
            for batch in _batches(values):
                body = await self.call("findTransactions", **{key: list(batch)})
                found.extend(_require(body, "hashes", list, "findTransactions"))
            return list(dict.fromkeys(found))
        body = await self.call("findTransactions", **fields)
        return list(_require(body, "hashes", list, "findTransactions"))

    async def get_trytes(self, hashes: Sequence[str]) -> list[str]:
        trytes: list[str] = []
        for batch in _batches(hashes):
            body = await self.call("getTrytes", hashes=list(batch))
            trytes.extend(_require(body, "trytes", list, "getTrytes"))
        return trytes

    async def get_transactions(self, hashes: Sequence[str]) -> list[Transaction]:
        """Stored transactions by hash; unknown hashes are left out."""
        return [
            Transaction.from_trytes(trytes)
            for trytes in await self.get_trytes(hashes)
            if trytes != EMPTY_TRYTES
        ]

    async def store_transactions(self, trytes: Sequence[str]) -> None:
        await self.call("storeTransactions", trytes=list(trytes))

    async def broadcast_transactions(self, trytes: Sequence[str]) -> None:
        await self.call("broadcastTransactions", trytes=list(trytes))

    async def attach_to_tangle(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """The node's ``attachToTangle`` (remote proof of work), whatever this client's
        ``proof_of_work``; :meth:`attach` is the configured choice."""
        body = await self.call(
            "attachToTangle",
            trunkTransaction=trunk,
            branchTransaction=branch,
            minWeightMagnitude=min_weight_magnitude,
            trytes=list(trytes),
        )
        return list(_require(body, "trytes", list, "attachToTangle"))

    @property
    def proof_of_work(self) -> ProofOfWork | None:
        """The local proof-of-work strategy, or ``None`` for the node's attachToTangle."""
        return self._proof_of_work

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """Chain and do proof of work where this client is configured to: with its
        :class:`ProofOfWork` strategy if it has one, else on the node
        (:meth:`attach_to_tangle`). Returns the attached trytes, tail first."""
        if self._proof_of_work is None:
            return await self.attach_to_tangle(trunk, branch, min_weight_magnitude, trytes)
        return await self._proof_of_work.attach(trunk, branch, min_weight_magnitude, trytes)

    async def interrupt_attaching_to_tangle(self) -> None:
        await self.call("interruptAttachingToTangle")

    async def get_transactions_to_approve(
        self, depth: int, reference: str | None = None
    ) -> TipPair:
        params: dict[str, Any] = {"depth": depth}
        if reference is not None:
            params["reference"] = reference
        body = await self.call("getTransactionsToApprove", **params)
        name = "getTransactionsToApprove"
        return TipPair(
            _require(body, "trunkTransaction", str, name),
            _require(body, "branchTransaction", str, name),
        )

    async def get_balances(
        self, addresses: Sequence[str], tips: Sequence[str] | None = None
    ) -> Balances:
        """Confirmed balances (as of the latest solid milestone, or of ``tips``)."""
        balances: list[int] = []
        references: list[str] = []
        index = 0
        for batch in _batches(addresses):
            params: dict[str, Any] = {"addresses": list(batch), "threshold": 100}
            if tips:
                params["tips"] = list(tips)
            body = await self.call("getBalances", **params)
            balances.extend(int(value) for value in _require(body, "balances", list, "getBalances"))
            references = list(body.get("references", []))
            index = max(index, int(body.get("milestoneIndex", 0)))
        return Balances(balances, references, index)

    async def get_inclusion_states(
        self, transactions: Sequence[str], tips: Sequence[str] | None = None
    ) -> list[bool]:
        """Whether each transaction is confirmed (referenced by ``tips`` if given)."""
        states: list[bool] = []
        for batch in _batches(transactions):
            params: dict[str, Any] = {"transactions": list(batch)}
            if tips:
                params["tips"] = list(tips)
            body = await self.call("getInclusionStates", **params)
            states.extend(bool(s) for s in _require(body, "states", list, "getInclusionStates"))
        return states

    async def were_addresses_spent_from(self, addresses: Sequence[str]) -> list[bool]:
        states: list[bool] = []
        for batch in _batches(addresses):
            body = await self.call("wereAddressesSpentFrom", addresses=list(batch))
            states.extend(bool(s) for s in _require(body, "states", list, "wereAddressesSpentFrom"))
        return states

    async def check_consistency(self, tails: Sequence[str]) -> tuple[bool, str]:
        body = await self.call("checkConsistency", tails=list(tails))
        return bool(_require(body, "state", bool, "checkConsistency")), str(body.get("info", ""))

    async def get_neighbors(self) -> list[dict[str, Any]]:
        return list(_require(await self.call("getNeighbors"), "neighbors", list, "getNeighbors"))

    async def add_neighbors(self, uris: Sequence[str]) -> int:
        body = await self.call("addNeighbors", uris=list(uris))
        return int(_require(body, "addedNeighbors", int, "addNeighbors"))

    async def remove_neighbors(self, uris: Sequence[str]) -> int:
        body = await self.call("removeNeighbors", uris=list(uris))
        return int(_require(body, "removedNeighbors", int, "removeNeighbors"))

    # -- multi-step operations ---------------------------------------------------

    async def send_trytes(
        self,
        trytes: Sequence[str],
        depth: int = 3,
        min_weight_magnitude: int = 9,
        reference: str | None = None,
    ) -> list[Transaction]:
        """Attach (see :meth:`attach`: local or remote proof of work), store and
        broadcast a bundle's trytes.

        ``trytes`` are in the order clients hand them to attachToTangle (last index
        first). Returns the attached transactions, tail first.
        """
        if not trytes:
            raise ProtocolError("send_trytes needs at least one transaction")
        tips = await self.get_transactions_to_approve(depth, reference)
        attached = await self.attach(tips.trunk, tips.branch, min_weight_magnitude, trytes)
        await self.store_transactions(attached)
        await self.broadcast_transactions(attached)
        return [Transaction.from_trytes(item) for item in attached]

    async def publish_mam(
        self,
        message: MamMessage,
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> list[Transaction]:
        """Attach a created MAM message at its address; returns its transactions."""
        bundle = message_to_transactions(message, tag=tag)
        trytes = [tx.to_trytes() for tx in sorted(bundle, key=lambda tx: -tx.current_index)]
        return await self.send_trytes(trytes, depth, min_weight_magnitude)

    async def publish_mams(
        self,
        messages: Sequence[MamMessage],
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> list[Transaction]:
        """Attach several MAM messages in one attachToTangle, storeTransactions and
        broadcastTransactions (each message is its own bundle; the node chains them as
        IRI does). Saves the round trips and per-call work of one publish per message;
        keep a call within the node's request limits (about 100 transactions).
        Returns the attached transactions, tail first (:meth:`publish_mams_trytes`
        leaves them unparsed)."""
        attached = await self.publish_mams_trytes(messages, tag, depth, min_weight_magnitude)
        return [Transaction.from_trytes(item) for item in attached]

    async def publish_mams_trytes(
        self,
        messages: Sequence[MamMessage],
        tag: str = "",
        depth: int = 3,
        min_weight_magnitude: int = 9,
    ) -> list[str]:
        """:meth:`publish_mams` returning the attached trytes as stored (for a publisher
        that has no use for the parsed transactions: parsing is its largest cost after
        proof of work). With a :class:`~.proof_of_work.MessageProofOfWork` strategy
        (the grid's worker processes) the bundles are finalised there too, beside their
        proof of work, rather than in this process."""
        if not messages:
            raise ProtocolError("publish_mams needs at least one message")
        tips = await self.get_transactions_to_approve(depth)
        strategy = self._proof_of_work
        if isinstance(strategy, MessageProofOfWork):
            attached = await strategy.attach_messages(
                tips.trunk, tips.branch, min_weight_magnitude, messages, tag
            )
        else:

            def build() -> list[str]:
                return [
                    tx.to_trytes()
                    for bundle in messages_to_transactions(messages, tag=tag)
                    for tx in reversed(bundle)
                ]

            # Finalizing searches each bundle's tag with Kerl (one batch for all): off the loop.
            trytes = await off_loop(build)
            attached = await self.attach(tips.trunk, tips.branch, min_weight_magnitude, trytes)
        await self.store_transactions(attached)
        await self.broadcast_transactions(attached)
        return attached

    async def fetch_mam(
        self,
        root: str,
        mode: MamMode,
        side_key: str | None = None,
        limit: int | None = None,
    ) -> list[ChannelEntry]:
        """Messages of a channel from ``root`` on, in channel order (see :mod:`.mam.walk`):
        follows next roots until a root has no message, skipping bundles at an
        address that do not verify (spam, garbage, another channel's data)."""
        if limit is not None and limit < 1:
            raise ProtocolError(f"limit must be positive, got {limit}")
        (messages,) = await walk_channels(self.transactions_at, [(root, mode, side_key)], limit)
        return messages

    async def transactions_at(self, addresses: Sequence[str]) -> list[Transaction]:
        """Every stored transaction at ``addresses``."""
        hashes = await self.find_transactions(addresses=addresses)
        return await self.get_transactions(hashes) if hashes else []
