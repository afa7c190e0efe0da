"""Async client of the legacy IRI HTTP API, with MAM and value-transfer helpers.

The caller injects the ``aiohttp.ClientSession`` (Home Assistant's shared
session, the grid server's, a test's). A node's refusal raises
:class:`~.errors.IriApiError`; an unreachable or non-IRI endpoint raises
:class:`~.errors.NodeUnavailableError`.

Proof of work runs on the node (``attachToTangle``) unless the client is given a
:class:`ProofOfWork` strategy such as :class:`LocalProofOfWork`, which does it in
an executor of the caller (a process pool, Home Assistant's thread executor), as
pyota's and ``@iota/core``'s local proof of work do.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp

from .bundle import BundleBuilder
from .errors import (
    InsufficientBalanceError,
    IriApiError,
    NodeUnavailableError,
    ProtocolError,
)
from .mam import (
    ChannelEntry,
    MamMessage,
    MamMode,
    message_to_transactions,
    messages_to_transactions,
    walk_channels,
)
from .pow import DEFAULT_LANES, attach_to_tangle
from .signing import generate_addresses
from .transaction import Transaction

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import Executor

API_VERSION_HEADER: Final = "X-IOTA-API-Version"
NULL_HASH: Final = "9" * 81
EMPTY_TRYTES: Final = "9" * 2673
# Items per request for list parameters; IRI's default maxRequestsList.
BATCH_SIZE: Final = 1000
# Addresses examined per round trip while looking for inputs.
ADDRESS_BATCH: Final = 10


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


async def _off_loop[**P, R](func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run CPU-bound key work (Kerl addresses, signing) in the loop's default executor,
    so an event loop shared with Home Assistant or the grid's API stays responsive."""
    call = functools.partial(func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, call)


class ProofOfWork(Protocol):
    """Where a client's ``attachToTangle`` (chaining and proof of work) is done.

    ``attach`` takes what the IRI command takes, the transactions in the order
    clients send them (each bundle last index first), and returns what it
    returns: the attached transactions' trytes, tail first, ready for
    ``storeTransactions``.
    """

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """Chain ``trytes`` onto ``(trunk, branch)`` and do their proof of work."""
        ...


class LocalProofOfWork:
    """Proof of work on this machine: :func:`~.pow.attach_to_tangle` in an executor.

    ``executor`` is where the nonce search runs; ``None`` is the event loop's
    default executor (in Home Assistant, its executor threads). A
    ``ProcessPoolExecutor`` uses other cores: the call and its arguments (a
    module-level function, strings and integers) pickle. The caller owns the
    executor and shuts it down. The attachment timestamp comes from this
    machine's clock, which the node checks against its own (it refuses
    timestamps too far in the future). The search is done at the weight asked for:
    unlike the node's attachToTangle, which raises a lower weight to its own minimum,
    so a node requiring more refuses the transactions (``IriApiError`` from
    storeTransactions).

    Errors: bad input raises the :class:`~.errors.ProtocolError` the node would
    refuse it with (from the worker, for a process pool); a process pool whose
    worker died raises ``concurrent.futures.process.BrokenProcessPool``, and a
    shut-down executor ``RuntimeError``. Nothing reaches the node in any case.
    """

    def __init__(self, executor: Executor | None = None, *, lanes: int = DEFAULT_LANES) -> None:
        """``lanes``: candidates per Curl transform (see :func:`~.pow.find_nonce`)."""
        self._executor = executor
        self._lanes = lanes

    @property
    def executor(self) -> Executor | None:
        """The executor the searches run in (``None``: the loop's default)."""
        return self._executor

    async def attach(
        self, trunk: str, branch: str, min_weight_magnitude: int, trytes: Sequence[str]
    ) -> list[str]:
        """IRI's ``attachToTangle`` done here; see :class:`ProofOfWork`."""
        call = functools.partial(
            attach_to_tangle,
            list(trytes),
            trunk,
            branch,
            min_weight_magnitude,
            lanes=self._lanes,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)


def _batches[T](items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _require(body: dict[str, Any], key: str, kind: type, command: str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NodeUnavailableError(f"{command}: the node's answer lacks a valid {key!r}")
    return value


class IriClient:
    """One typed method per IRI command, plus the multi-step operations.

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
        keep a call within the node's request limits (about 100 transactions)."""

        def build() -> list[str]:
            return [
                tx.to_trytes()
                for bundle in messages_to_transactions(messages, tag=tag)
                for tx in sorted(bundle, key=lambda tx: -tx.current_index)
            ]

        # Finalizing searches each bundle's tag with Kerl (one batch for all): off the loop.
        return await self.send_trytes(await _off_loop(build), depth, min_weight_magnitude)

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
            addresses = await _off_loop(generate_addresses, seed, index, ADDRESS_BATCH, security)
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

        return await _off_loop(build_and_sign)

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
