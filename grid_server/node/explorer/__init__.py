"""A small Tangle explorer: transactions, bundles, addresses and MAM streams.

The page (``/explorer/``) is static HTML and JavaScript served by the node; it
reads the JSON views below. Links the grid portal can use:
``/explorer/#/transaction/<hash>``, ``#/bundle/<hash>``, ``#/address/<address>``
and ``#/mam/<root>?mode=restricted&sideKey=<key>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from aiohttp import web
from p2p_energy_protocol.address import validate_address
from p2p_energy_protocol.errors import ProtocolError
from p2p_energy_protocol.mam import channel_address, walk_channels_sync
from p2p_energy_protocol.transaction import Transaction, transactions_from_trytes

from ..storage import NULL_HASH, TangleStore, TransactionInfo

if TYPE_CHECKING:
    from p2p_energy_protocol.mam import MamMode

    from ..runtime import NodeRuntime
    from ..tangle import Tangle

STATIC_DIR: Final = Path(__file__).parent / "static"
_HASH: Final = re.compile(r"[9A-Z]{81}")
_SIDE_KEY: Final = re.compile(r"[9A-Z]{1,81}")
_MODES: Final = ("public", "private", "restricted")
ADDRESS_PAGE: Final = 100
MAM_LIMIT: Final = 100


class ExplorerError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _summary(tx: Transaction, info: TransactionInfo | None) -> dict[str, Any]:
    return {
        "hash": tx.hash,
        "address": tx.address,
        "value": tx.value,
        "tag": tx.tag,
        "bundle": tx.bundle,
        "currentIndex": tx.current_index,
        "lastIndex": tx.last_index,
        "timestamp": tx.timestamp,
        "attachmentTimestamp": tx.attachment_timestamp,
        "confirmedBy": None if info is None else info.confirmed,
        "solid": None if info is None else info.solid,
    }


def _details(tx: Transaction, info: TransactionInfo | None) -> dict[str, Any]:
    return {
        **_summary(tx, info),
        "obsoleteTag": tx.obsolete_tag,
        "trunkTransaction": tx.trunk_transaction,
        "branchTransaction": tx.branch_transaction,
        "attachmentTimestampLowerBound": tx.attachment_timestamp_lower_bound,
        "attachmentTimestampUpperBound": tx.attachment_timestamp_upper_bound,
        "nonce": tx.nonce,
        "signatureMessageFragment": tx.signature_message_fragment,
    }


def _load(tangle: Tangle, hashes: list[str]) -> list[tuple[Transaction, TransactionInfo]]:
    with tangle.store.connect() as conn:
        infos = TangleStore.infos(conn, hashes)
        found = TangleStore.trytes_of(conn, hashes)
    ordered = [h for h in hashes if h in found]
    parsed = transactions_from_trytes([found[h] for h in ordered])
    return [(tx, infos[h]) for tx, h in zip(parsed, ordered, strict=True)]


def transaction_view(tangle: Tangle, transaction_hash: str) -> dict[str, Any]:
    loaded = _load(tangle, [transaction_hash])
    if not loaded:
        raise ExplorerError(f"transaction {transaction_hash} is not stored on this node", 404)
    tx, info = loaded[0]
    with tangle.store.connect() as conn:
        approvers = sorted(a.hash for a in TangleStore.approvers(conn, [transaction_hash]))
        milestone = TangleStore.milestone_by_hash(conn, transaction_hash)
    return {
        **_details(tx, info),
        "approvers": approvers,
        "milestoneIndex": None if milestone is None else milestone.index,
    }


def bundle_view(tangle: Tangle, bundle: str) -> dict[str, Any]:
    hashes = tangle.find_transactions(None, [bundle], None, None)
    if not hashes:
        raise ExplorerError(f"bundle {bundle} is not stored on this node", 404)
    loaded = _load(tangle, hashes)
    by_hash = {tx.hash: (tx, info) for tx, info in loaded}
    instances: list[list[dict[str, Any]]] = []
    for tx, info in sorted(loaded, key=lambda item: item[0].attachment_timestamp):
        if tx.current_index != 0:
            continue
        chain = [_summary(tx, info)]
        current = tx
        while current.current_index < current.last_index and current.trunk_transaction in by_hash:
            current, current_info = by_hash[current.trunk_transaction]
            chain.append(_summary(current, current_info))
        instances.append(chain)
    return {
        "bundle": bundle,
        "transferred": sum(tx["value"] for tx in instances[0] if tx["value"] > 0)
        if instances
        else 0,
        "instances": instances,
        "confirmedBy": min(
            (info.confirmed for _, info in loaded if info.current_index == 0 and info.confirmed),
            default=None,
        ),
    }


def address_view(tangle: Tangle, address: str) -> dict[str, Any]:
    hashes = tangle.find_transactions([address], None, None, None)
    newest = hashes[-ADDRESS_PAGE:][::-1]
    loaded = _load(tangle, newest)
    balances, _references, index = tangle.balances([address], [])
    return {
        "address": address,
        "balance": balances[0],
        "milestoneIndex": index,
        "spent": tangle.were_spent([address])[0],
        "transactionCount": len(hashes),
        "transactions": [_summary(tx, info) for tx, info in loaded],
    }


def mam_view(
    tangle: Tangle, root: str, mode: MamMode, side_key: str | None, limit: int
) -> dict[str, Any]:
    """Read a channel from ``root`` as any MAM client would, skipping spam bundles."""

    def transactions_at(addresses: list[str]) -> list[Transaction]:
        hashes = tangle.find_transactions(addresses, None, None, None)
        return [transaction for transaction, _ in _load(tangle, hashes)]

    (entries,) = walk_channels_sync(transactions_at, [(root, mode, side_key)], limit)
    messages: list[dict[str, Any]] = []
    for entry in entries:
        try:
            text: str | None = entry.text
        except ProtocolError:
            text = None
        messages.append(
            {
                "root": entry.root,
                "address": channel_address(entry.root, mode),
                "message": entry.message,
                "text": text,
                "data": entry.data,
                "nextRoot": entry.next_root,
                "skippedBundles": entry.skipped,
            }
        )
    next_root = entries[-1].next_root if entries else root
    return {"root": root, "mode": mode, "messages": messages, "nextRoot": next_root}


def status_view(tangle: Tangle) -> dict[str, Any]:
    state = tangle.milestone_state()
    tips, to_request = tangle.counts()
    count = tangle.transaction_count()
    return {
        "coordinatorAddress": tangle.coordinator_address,
        "latestMilestoneIndex": state.latest.index if state.latest else 0,
        "latestMilestone": state.latest.hash if state.latest else NULL_HASH,
        "latestSolidMilestoneIndex": state.latest_solid.index if state.latest_solid else 0,
        "transactions": count,
        "tips": tips,
        "transactionsToRequest": to_request,
    }


def _hash_parameter(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _HASH.fullmatch(value):
        raise ExplorerError(f"{name} must be 81 trytes (9 and A-Z)")
    return value


def _runtime(request: web.Request) -> NodeRuntime:
    from ..app import runtime_of

    return runtime_of(request)


async def _json(request: web.Request, view: Any, *args: Any) -> web.Response:
    node = _runtime(request)
    try:
        return web.json_response(await node.read(view, node.tangle, *args))
    except ExplorerError as err:
        return web.json_response({"error": err.message}, status=err.status)


def _error(err: ExplorerError) -> web.Response:
    return web.json_response({"error": err.message}, status=err.status)


async def handle_transaction(request: web.Request) -> web.Response:
    try:
        return await _json(request, transaction_view, _hash_parameter(request, "hash"))
    except ExplorerError as err:
        return _error(err)


async def handle_bundle(request: web.Request) -> web.Response:
    try:
        return await _json(request, bundle_view, _hash_parameter(request, "hash"))
    except ExplorerError as err:
        return _error(err)


async def handle_address(request: web.Request) -> web.Response:
    raw = request.match_info["address"]
    try:
        address = validate_address(raw, allow_checksum=True)
    except ProtocolError as err:
        return _error(ExplorerError(f"address: {err}"))
    return await _json(request, address_view, address)


async def handle_mam(request: web.Request) -> web.Response:
    query = request.query
    root = query.get("root", "")
    mode = query.get("mode", "restricted")
    side_key = query.get("sideKey") or None
    try:
        if not _HASH.fullmatch(root):
            raise ExplorerError("root must be 81 trytes (9 and A-Z)")
        if mode not in _MODES:
            raise ExplorerError("mode must be public, private or restricted")
        if mode == "restricted" and side_key is None:
            raise ExplorerError("a restricted channel needs its sideKey")
        if side_key is not None and not _SIDE_KEY.fullmatch(side_key):
            raise ExplorerError("sideKey must be 1 to 81 trytes (9 and A-Z)")
        limit_text = query.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAM_LIMIT:
            raise ExplorerError(f"limit must be an integer 1..{MAM_LIMIT}")
    except ExplorerError as err:
        return _error(err)
    return await _json(request, mam_view, root, cast("MamMode", mode), side_key, int(limit_text))


async def handle_status(request: web.Request) -> web.Response:
    return await _json(request, status_view)


async def handle_page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def add_explorer_routes(app: web.Application) -> None:
    app.router.add_get("/explorer/", handle_page)
    app.router.add_get("/explorer/api/status", handle_status)
    app.router.add_get("/explorer/api/transaction/{hash}", handle_transaction)
    app.router.add_get("/explorer/api/bundle/{hash}", handle_bundle)
    app.router.add_get("/explorer/api/address/{address}", handle_address)
    app.router.add_get("/explorer/api/mam", handle_mam)
    app.router.add_static("/explorer/static/", STATIC_DIR, show_index=False)
