"""An in-memory grid and Tangle node standing in for the engine's ``GridConnection``.

MAM messages are real (created and parsed by the protocol library), so what a
household publishes is checked by decoding it, and what the fake grid publishes
(hello, payment requests) goes through the household's real reader. The grid's
behaviour follows the blueprint: a registration needs a channel that starts with
``hello``; a consumer gets a return channel; removing a registration needs its
side key.

The protocol library is importable under two names (``p2p_energy_protocol`` for
the engine's own tests, ``custom_components.p2p_energy.protocol`` inside Home
Assistant), which are two sets of classes; the fake takes the name its household
uses, so the errors it raises and the values it returns are the household's own.
"""

from __future__ import annotations

import importlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from p2p_energy_protocol.trinary import trytes_to_ascii

ENGINE_PROTOCOL = "p2p_energy_protocol"
HOME_ASSISTANT_PROTOCOL = "custom_components.p2p_energy.protocol"

GRID_SEED = "G" * 81
GRID_SIDE_KEY = "GRIDSIDEKEY" + "9" * 70


@dataclass
class FakeNodeInfo:
    """The part of getNodeInfo the integration reads."""

    latest_solid_milestone_index: int


@dataclass
class Transfer:
    """A value transfer the integration signed: its inputs and outputs."""

    seed: str
    address: str
    value: int
    remainder: str
    bundle: str
    inputs: dict[str, int]


def decode(message_trytes: str) -> Any:
    """The JSON value of message trytes."""
    return json.loads(trytes_to_ascii(message_trytes))


class FakeNetwork:
    """One grid, its node and its Tangle, in memory."""

    def __init__(self, protocol: str = ENGINE_PROTOCOL) -> None:
        """Start online and empty; ``protocol`` names the household's protocol library."""
        self.p = _Protocol(protocol)
        self.grid_url = "http://grid.example:8080"
        self.node_url = "http://grid.example:14265"
        self.min_weight_magnitude = 9
        self.node_up = True
        self.grid_up = True
        self.health: dict[str, Any] = {"success": True, "message": "OK", "status": "ok"}
        self.milestone = 7
        self.tangle: dict[str, list[str]] = defaultdict(list)
        self.published: list[Any] = []
        self.registrations: dict[str, dict[str, Any]] = {}
        self.refuse_registrations: str | None = None
        self.registration_outage = False
        self.remote_producer_up = True
        self.issue_tokens = False
        self.return_channels: dict[str, Any] = {}
        self.return_roots: dict[str, str] = {}
        self.producer_registrations: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.balances_by_address: dict[str, int] = defaultdict(int)
        self.transfers: list[Transfer] = []
        """Every bundle signed, in order."""
        self.transfer_error: Exception | None = None
        """Raised while signing (before anything is sent)."""
        self.attach_error: Exception | None = None
        """Raised by the proof of work: nothing reaches the node."""
        self.lost_answer: Exception | None = None
        """Raised after the node stored the bundle: the answer is lost."""
        self.confirm_transfers = True
        """Whether a stored bundle confirms at once (else call ``confirm``)."""
        self.attachments: list[str] = []
        """The bundle of every attachment the node stored."""
        self.confirmed: set[str] = set()
        self.proof_of_work: Any = None
        """What the runtime passed as the connection's proof of work."""
        self.storage: dict[tuple[str, str, str], Any] = {}
        """The grid's storage API: (registration id, context, item id) -> item."""
        self.forecast: dict[str, Any] = {"success": True, "slotSeconds": 900, "slots": []}
        """The grid's answer to GET /forecast."""

    def __call__(self, *args: Any) -> FakeNetwork:
        """Stand in for the GridConnection constructor (keeping its proof of work)."""
        self.proof_of_work = args[4] if len(args) > 4 else None
        return self

    # GridConnection --------------------------------------------------------------

    @property
    def local_proof_of_work(self) -> bool:
        """Whether the runtime asked for local proof of work."""
        return self.proof_of_work is not None

    def _node(self) -> None:
        if not self.node_up:
            raise self.p.errors.NodeUnavailableError("node down")

    def _grid(self) -> None:
        if not self.grid_up:
            raise self.p.errors.GridUnavailableError("grid down")

    async def node_info(self) -> FakeNodeInfo:
        """The node's state."""
        self._node()
        return FakeNodeInfo(self.milestone)

    async def grid_health(self) -> dict[str, Any]:
        """Fails when the grid is down."""
        self._grid()
        return dict(self.health)

    async def price_forecast(self) -> Any:
        """The grid's price forecast (``forecast``); fails when the grid is down."""
        self._grid()
        return self.p.price_forecast.parse_price_forecast(self.forecast)

    async def publish(self, message: Any) -> None:
        """Attach the payload at its address."""
        self._node()
        self.tangle[message.address].append(message.payload)
        self.published.append(message)

    async def read_channel(self, root: str, side_key: str, limit: int | None = None) -> list[Any]:
        """Read a restricted channel, skipping what does not parse at an address."""
        self._node()
        messages: list[Any] = []
        while limit is None or len(messages) < limit:
            for payload in self.tangle.get(self.p.mam.mam_address(root, "restricted"), []):
                try:
                    parsed = self.p.mam.parse_message(payload, root, side_key)
                except self.p.errors.MamError:
                    continue
                messages.append(self.p.mam.ChannelEntry(root, parsed.next_root, parsed.message))
                root = parsed.next_root
                break
            else:
                break
        return messages

    async def register(
        self,
        registration_id: str,
        item_name: str,
        item_type: str,
        root: str,
        side_key: str,
        token: str | None,
        max_price: float | None = None,
    ) -> Any:
        """Register a producer or consumer after finding its hello."""
        self._grid()
        if self.registration_outage:
            raise self.p.errors.GridUnavailableError("connection reset")
        if self.refuse_registrations:
            raise self.p.errors.GridApiError(self.refuse_registrations, 400)
        known = self.registrations.get(registration_id)
        if known and known.get("token") and token != known["token"]:
            raise self.p.errors.GridApiError("The token does not match.", 401)
        hello = await self.read_channel(root, side_key, limit=1)
        if not hello or hello[0].data != {"command": "hello"}:
            raise self.p.errors.GridApiError("The channel does not start with 'hello'.", 400)
        issued = None
        if known is None and self.issue_tokens:
            issued = f"token-{registration_id}"
        self.registrations[registration_id] = {
            "item_name": item_name,
            "item_type": item_type,
            "root": root,
            "side_key": side_key,
            "token": issued or (known or {}).get("token"),
            "max_price": max_price,
        }
        if item_type != "consumer":
            return self.p.grid_client.RegistrationReply(None, None, issued)
        channel = self.return_channels.get(registration_id)
        if channel is None:
            channel = self.p.mam.create_channel(GRID_SEED, 2, "restricted", GRID_SIDE_KEY)
            channel.start = len(self.return_channels) * 100
            self.return_channels[registration_id] = channel
            self.return_roots[registration_id] = self.p.mam.channel_root(channel)
            self.grid_publish(registration_id, {"command": "hello"})
        root = self.return_roots[registration_id]
        return self.p.grid_client.RegistrationReply(root, GRID_SIDE_KEY, issued)

    def grid_publish(self, registration_id: str, body: dict[str, Any]) -> None:
        """Publish on the grid's return channel of a consumer."""
        channel = self.return_channels[registration_id]
        message = self.p.mam.create_message(channel, body)
        self.tangle[message.address].append(message.payload)

    async def deregister(self, registration_id: str, side_key: str, token: str | None) -> None:
        """Remove a registration; its side key must match."""
        self._grid()
        known = self.registrations.get(registration_id)
        if known is None:
            raise self.p.errors.GridApiError("The registration does not exist.", 404)
        if known["side_key"] != side_key:
            raise self.p.errors.GridApiError("The side key does not match.", 403)
        del self.registrations[registration_id]

    async def register_source(
        self, producer_url: str, registration_id: str, item_name: str, root: str, side_key: str
    ) -> None:
        """Register a source with a remote producer."""
        if not self.remote_producer_up:
            raise self.p.errors.GridUnavailableError("producer unreachable")
        self.producer_registrations[producer_url][registration_id] = {
            "item_name": item_name,
            "root": root,
            "side_key": side_key,
        }

    async def deregister_source(
        self, producer_url: str, registration_id: str, side_key: str
    ) -> None:
        """Remove a source from a remote producer."""
        if not self.remote_producer_up:
            raise self.p.errors.GridUnavailableError("producer unreachable")
        registrations = self.producer_registrations[producer_url]
        if registrations.get(registration_id, {}).get("side_key") != side_key:
            raise self.p.errors.GridApiError("The side key does not match.", 403)
        del registrations[registration_id]

    async def store_item(
        self, registration_id: str, context: str, item_id: str, item: Any, token: str | None
    ) -> None:
        """Keep an item in the grid's storage."""
        self._grid()
        self.storage[(registration_id, context, item_id)] = item

    async def delete_item(
        self, registration_id: str, context: str, item_id: str, token: str | None
    ) -> None:
        """Remove an item from the grid's storage."""
        self._grid()
        self.storage.pop((registration_id, context, item_id), None)

    async def balances(self, addresses: list[str]) -> list[int]:
        """Confirmed balances."""
        self._node()
        return [self.balances_by_address[address] for address in addresses]

    async def prepare_transfer(self, seed: str, address: str, value: int, remainder: str) -> Any:
        """Sign a bundle spending every funded address (the test funds them)."""
        self._node()
        if self.transfer_error is not None:
            raise self.transfer_error
        inputs = {a: balance for a, balance in self.balances_by_address.items() if balance > 0}
        total = sum(inputs.values())
        if total < value:
            raise self.p.errors.InsufficientBalanceError(f"{total} available, {value} needed")
        bundle = chr(ord("A") + len(self.transfers)) * 81
        self.transfers.append(Transfer(seed, address, value, remainder, bundle, inputs))
        trytes = [f"SIGNED-{bundle}-{index}" for index in range(2)]
        return self.p.client.SignedBundle(bundle, trytes)

    def _signed(self, trytes: list[str]) -> Transfer:
        (transfer,) = [t for t in self.transfers if trytes[0] == f"SIGNED-{t.bundle}-0"]
        return transfer

    async def broadcast_transfer(self, trytes: list[str]) -> None:
        """Store an attachment of a signed bundle; confirm it if told to."""
        self._node()
        if self.attach_error is not None:
            raise self.p.transfers.TransferNotSentError(self.attach_error)
        transfer = self._signed(trytes)
        self.attachments.append(transfer.bundle)
        if self.confirm_transfers:
            self.confirm(transfer.bundle)
        if self.lost_answer is not None:
            raise self.lost_answer

    async def transfer_state(self, bundle: str, trytes: list[str]) -> Any:
        """Confirmed, or pending while its inputs still hold what it spends."""
        self._node()
        transfer = self._signed(trytes)
        assert transfer.bundle == bundle
        if bundle in self.confirmed:
            return self.p.transfers.TransferState.CONFIRMED
        if self._spent_elsewhere(transfer):
            return self.p.transfers.TransferState.CONFLICTING
        return self.p.transfers.TransferState.PENDING

    def _spent_elsewhere(self, transfer: Transfer) -> bool:
        return any(
            self.balances_by_address[address] < balance
            for address, balance in transfer.inputs.items()
        )

    def confirm(self, bundle: str) -> None:
        """A milestone confirms a stored bundle: the ledger moves, once."""
        (transfer,) = [t for t in self.transfers if t.bundle == bundle]
        assert bundle in self.attachments, "only stored bundles confirm"
        if bundle in self.confirmed or self._spent_elsewhere(transfer):
            return
        for address in transfer.inputs:
            self.balances_by_address[address] = 0
        self.balances_by_address[transfer.address] += transfer.value
        self.balances_by_address[transfer.remainder] += (
            sum(transfer.inputs.values()) - transfer.value
        )
        self.confirmed.add(bundle)

    # Test helpers -------------------------------------------------------------------

    def bodies(self, root: str, side_key: str) -> list[Any]:
        """Decoded JSON of every message of a channel."""
        messages: list[Any] = []
        while True:
            for payload in self.tangle.get(self.p.mam.mam_address(root, "restricted"), []):
                try:
                    parsed = self.p.mam.parse_message(payload, root, side_key)
                except self.p.errors.MamError:
                    continue
                messages.append(decode(parsed.message))
                root = parsed.next_root
                break
            else:
                return messages


def node_error(protocol: str = ENGINE_PROTOCOL) -> Any:
    """A node refusing a command."""
    errors = importlib.import_module(f"{protocol}.errors")
    return errors.IriApiError("attachToTangle", 400, "refused")


class _Protocol:
    """The protocol library's modules under one of its two names."""

    client: Any
    errors: Any
    grid_client: Any
    mam: Any
    price_forecast: Any
    transfers: Any

    def __init__(self, package: str) -> None:
        self.package = package
        for name in ("client", "errors", "grid_client", "mam", "price_forecast", "transfers"):
            setattr(self, name, importlib.import_module(f"{package}.{name}"))
