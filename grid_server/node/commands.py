"""The legacy IRI commands: request checking and answers.

Every parameter is checked here, so the layers below only ever see
well-formed values; anything else becomes a 400 with a message that names the
parameter, as IRI answered.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from p2p_energy_protocol.address import validate_address
from p2p_energy_protocol.errors import ProofOfWorkError, ProtocolError

from ..config_loading import ConfigError
from .config import ApiLimits, normalize_neighbor_url
from .errors import CommandError
from .storage import NULL_HASH

if TYPE_CHECKING:
    from .runtime import NodeRuntime

API_VERSION: Final = "1.8.6-p2p"
HASH_PATTERN: Final = re.compile(r"[9A-Z]{81}")
TAG_PATTERN: Final = re.compile(r"[9A-Z]{1,27}")
TRYTES_PATTERN: Final = re.compile(r"[9A-Z]*")

Request = Mapping[str, Any]
Response = dict[str, Any]


def _still_waiting() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command: its proof-of-work queue, the neighbour if it proved to be one,
    and whether it still waits for the answer (its connection is open)."""

    queue: str = "local"
    peer: str | None = None
    waiting: Callable[[], bool] = _still_waiting


Handler = Callable[["NodeRuntime", Request, Caller], Awaitable[Response]]


def _list(request: Request, key: str, *, required: bool, limit: int) -> list[Any] | None:
    if key not in request or request[key] is None:
        if required:
            raise CommandError(f"Invalid {key} input: the parameter '{key}' is required")
        return None
    value = request[key]
    if not isinstance(value, list):
        raise CommandError(f"Invalid {key} input: '{key}' must be a list")
    if len(value) > limit:
        raise CommandError(
            f"Invalid {key} input: at most {limit} items are allowed, got {len(value)}"
        )
    return value


def hashes_param(
    request: Request, key: str, *, required: bool = True, limit: int = 1_000
) -> list[str] | None:
    values = _list(request, key, required=required, limit=limit)
    if values is None:
        return None
    for position, value in enumerate(values):
        if not isinstance(value, str) or not HASH_PATTERN.fullmatch(value):
            raise CommandError(
                f"Invalid {key} input: item {position} is not an 81-tryte hash (9 and A-Z)"
            )
    return values


def addresses_param(
    request: Request, key: str = "addresses", *, required: bool = True, limit: int = 1_000
) -> list[str] | None:
    values = _list(request, key, required=required, limit=limit)
    if values is None:
        return None
    addresses: list[str] = []
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise CommandError(f"Invalid {key} input: item {position} is not a string")
        try:
            addresses.append(validate_address(value, allow_checksum=True))
        except ProtocolError as err:
            raise CommandError(f"Invalid {key} input: item {position}: {err}") from err
    return addresses


def int_param(
    request: Request, key: str, *, minimum: int, maximum: int, default: int | None = None
) -> int:
    if key not in request or request[key] is None:
        if default is None:
            raise CommandError(f"Invalid {key} input: the parameter '{key}' is required")
        return default
    value: object = request[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"Invalid {key} input: '{key}' must be an integer")
    if not minimum <= value <= maximum:
        raise CommandError(
            f"Invalid {key} input: '{key}' must be {minimum}..{maximum}, got {value}"
        )
    return value


def _limits(node: NodeRuntime) -> ApiLimits:
    return node.config.limits


async def get_node_info(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    state = await node.read(node.tangle.milestone_state)
    tips, to_request = await node.read(node.tangle.counts)
    latest, solid = state.latest, state.latest_solid
    return {
        "appName": node.config.app_name,
        "appVersion": API_VERSION,
        "jreAvailableProcessors": os.cpu_count() or 1,
        "jreFreeMemory": 0,
        "jreMaxMemory": 0,
        "jreTotalMemory": 0,
        "jreVersion": f"Python {platform.python_version()}",
        "latestMilestone": latest.hash if latest else NULL_HASH,
        "latestMilestoneIndex": latest.index if latest else 0,
        "latestSolidSubtangleMilestone": solid.hash if solid else NULL_HASH,
        "latestSolidSubtangleMilestoneIndex": solid.index if solid else 0,
        "milestoneStartIndex": 0,
        "lastSnapshottedMilestoneIndex": 0,
        "neighbors": len(node.peering.urls()),
        "packetsQueueSize": node.peering.queued(),
        "time": int(time.time() * 1000),
        "tips": tips,
        "transactionsToRequest": to_request,
        "features": ["RemotePOW"],
        "coordinatorAddress": node.coordinator_address,
    }


async def get_tips(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    return {"hashes": await node.read(node.tangle.tips)}


async def find_transactions(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    limit = _limits(node).max_requests_list
    addresses = addresses_param(request, "addresses", required=False, limit=limit)
    bundles = hashes_param(request, "bundles", required=False, limit=limit)
    approvees = hashes_param(request, "approvees", required=False, limit=limit)
    raw_tags = _list(request, "tags", required=False, limit=limit)
    tags: list[str] | None = None
    if raw_tags is not None:
        tags = []
        for position, tag in enumerate(raw_tags):
            if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
                raise CommandError(f"Invalid tags input: item {position} is not 1 to 27 trytes")
            tags.append(tag.ljust(27, "9"))
    if addresses is None and bundles is None and approvees is None and tags is None:
        raise CommandError(
            "Invalid findTransactions input: give at least one of addresses, bundles, tags, "
            "approvees"
        )
    hashes = await node.read(node.tangle.find_transactions, addresses, bundles, tags, approvees)
    return {"hashes": hashes}


async def get_trytes(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    hashes = hashes_param(request, "hashes", limit=_limits(node).max_get_trytes)
    assert hashes is not None
    return {"trytes": await node.read(node.tangle.get_trytes, hashes)}


def _trytes_param(node: NodeRuntime, request: Request) -> list[object]:
    values = _list(request, "trytes", required=True, limit=_limits(node).max_get_trytes)
    assert values is not None
    if not values:
        raise CommandError("Invalid trytes input: the list is empty")
    return values


async def store_transactions(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    await node.accept(_trytes_param(node, request), peer=caller.peer)
    return {}


async def broadcast_transactions(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    # Storing is idempotent, so broadcasting stores too: neighbours only hear of what
    # this node accepted.
    await node.accept(_trytes_param(node, request), peer=caller.peer)
    return {}


async def attach_to_tangle(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    trunk = _single_hash(request, "trunkTransaction")
    branch = _single_hash(request, "branchTransaction")
    limits = _limits(node)
    heaviest = max(limits.max_attach_weight, node.config.min_weight_magnitude)
    mwm = int_param(request, "minWeightMagnitude", minimum=1, maximum=heaviest)
    values = _list(request, "trytes", required=True, limit=limits.max_attach_transactions)
    assert values is not None
    if not values:
        raise CommandError("Invalid trytes input: the list is empty")
    for position, trytes in enumerate(values):
        if (
            not isinstance(trytes, str)
            or len(trytes) != 2673
            or not TRYTES_PATTERN.fullmatch(trytes)
        ):
            raise CommandError(f"Invalid trytes input: item {position} is not 2673 trytes")
    try:
        attached = await node.attach(
            values, trunk, branch, mwm, caller=caller.queue, waiting=caller.waiting
        )
    except ProofOfWorkError as err:
        raise CommandError(f"attachToTangle failed: {err}") from err
    except ProtocolError as err:
        raise CommandError(f"Invalid trytes input: {err}") from err
    return {"trytes": attached}


def _single_hash(request: Request, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not HASH_PATTERN.fullmatch(value):
        raise CommandError(f"Invalid {key} input: '{key}' must be an 81-tryte hash")
    return value


async def interrupt_attaching_to_tangle(
    node: NodeRuntime, request: Request, caller: Caller
) -> Response:
    node.interrupt_attaching(caller.queue)
    return {}


async def get_transactions_to_approve(
    node: NodeRuntime, request: Request, caller: Caller
) -> Response:
    max_depth = _limits(node).max_depth
    depth = int_param(request, "depth", minimum=0, maximum=max_depth)
    reference = None
    if request.get("reference") is not None:
        reference = _single_hash(request, "reference")
    trunk, branch = await node.read(node.tangle.transactions_to_approve, depth, reference)
    return {"trunkTransaction": trunk, "branchTransaction": branch}


async def get_balances(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    limits = _limits(node)
    addresses = addresses_param(request, limit=limits.max_requests_list)
    assert addresses is not None
    int_param(request, "threshold", minimum=1, maximum=100, default=100)
    tips = hashes_param(request, "tips", required=False, limit=limits.max_requests_list) or []
    balances, references, index = await node.read(node.tangle.balances, addresses, tips)
    return {
        "balances": [str(balance) for balance in balances],
        "references": references,
        "milestoneIndex": index,
    }


async def get_inclusion_states(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    limit = _limits(node).max_requests_list
    transactions = hashes_param(request, "transactions", limit=limit)
    assert transactions is not None
    tips = hashes_param(request, "tips", required=False, limit=limit) or []
    return {"states": await node.read(node.tangle.inclusion_states, transactions, tips)}


async def were_addresses_spent_from(
    node: NodeRuntime, request: Request, caller: Caller
) -> Response:
    addresses = addresses_param(request, limit=_limits(node).max_requests_list)
    assert addresses is not None
    return {"states": await node.read(node.tangle.were_spent, addresses)}


async def check_consistency(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    tails = hashes_param(request, "tails", limit=_limits(node).max_requests_list)
    assert tails is not None
    if not tails:
        raise CommandError("Invalid tails input: the list is empty")
    state, info = await node.read(node.tangle.check_consistency, tails)
    return {"state": state, "info": info} if info else {"state": state}


async def get_neighbors(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    return {"neighbors": await node.peering.describe()}


def _uris(request: Request) -> list[str]:
    values = _list(request, "uris", required=True, limit=100)
    assert values is not None
    urls: list[str] = []
    for position, value in enumerate(values):
        try:
            urls.append(normalize_neighbor_url(value))
        except ConfigError as err:
            raise CommandError(f"Invalid uris input: item {position}: {err}") from err
    return urls


async def add_neighbors(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    added = 0
    for url in _uris(request):
        if url == node.url:
            raise CommandError("Invalid uris input: a node cannot be its own neighbour")
        added += await node.peering.add(url)
    return {"addedNeighbors": added}


async def remove_neighbors(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    removed = 0
    for url in _uris(request):
        removed += await node.peering.remove(url)
    return {"removedNeighbors": removed}


async def sync_transactions(node: NodeRuntime, request: Request, caller: Caller) -> Response:
    """Neighbours page through everything this node stored, in arrival order."""
    since = int_param(request, "since", minimum=0, maximum=2**62)
    limit = int_param(request, "limit", minimum=1, maximum=1_000, default=500)
    trytes, following, head = await node.read(node.tangle.page_since, since, limit)
    return {"trytes": trytes, "next": following, "head": head}


COMMANDS: Final[dict[str, Handler]] = {
    "getNodeInfo": get_node_info,
    "getTips": get_tips,
    "findTransactions": find_transactions,
    "getTrytes": get_trytes,
    "storeTransactions": store_transactions,
    "broadcastTransactions": broadcast_transactions,
    "attachToTangle": attach_to_tangle,
    "interruptAttachingToTangle": interrupt_attaching_to_tangle,
    "getTransactionsToApprove": get_transactions_to_approve,
    "getBalances": get_balances,
    "getInclusionStates": get_inclusion_states,
    "wereAddressesSpentFrom": were_addresses_spent_from,
    "checkConsistency": check_consistency,
    "getNeighbors": get_neighbors,
    "addNeighbors": add_neighbors,
    "removeNeighbors": remove_neighbors,
    "syncTransactions": sync_transactions,
}


async def dispatch(node: NodeRuntime, request: object, caller: Caller | None = None) -> Response:
    """Run one command for ``caller`` (by default a program on this machine)."""
    if not isinstance(request, dict):
        raise CommandError("the request body must be a JSON object with a 'command'")
    command = request.get("command")
    if command is None:
        raise CommandError("COMMAND parameter has not been specified in the request.")
    if not isinstance(command, str):
        raise CommandError("'command' must be a string")
    handler = COMMANDS.get(command)
    if handler is None:
        raise CommandError(f"Command [{command[:64]}] is unknown")
    return await handler(node, request, caller or Caller())
