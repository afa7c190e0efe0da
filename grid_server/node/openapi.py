"""The node's OpenAPI 3.1 document: every command's request and answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .commands import API_VERSION

if TYPE_CHECKING:
    from .config import NodeConfig

Schema = dict[str, Any]
_REFS: Final = "#/components/schemas/"

HASH: Final[Schema] = {"type": "string", "pattern": "^[9A-Z]{81}$"}
ADDRESS: Final[Schema] = {
    "type": "string",
    "pattern": "^[9A-Z]{81}([9A-Z]{9})?$",
    "description": "81 trytes, or 90 with a valid checksum",
}
TRANSACTION_TRYTES: Final[Schema] = {"type": "string", "pattern": "^[9A-Z]{2673}$"}
TAG: Final[Schema] = {"type": "string", "pattern": "^[9A-Z]{1,27}$"}
NEIGHBOR_URI: Final[Schema] = {
    "type": "string",
    "pattern": r"^(https?|tcp)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?$",
}


def _array(items: Schema, max_items: int, min_items: int = 0) -> Schema:
    return {"type": "array", "items": items, "maxItems": max_items, "minItems": min_items}


def _command(name: str, properties: Schema, required: list[str], summary: str) -> Schema:
    return {
        "type": "object",
        "title": name,
        "description": summary,
        "properties": {"command": {"const": name}, **properties},
        "required": ["command", *required],
    }


def _integer(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _requests(config: NodeConfig) -> list[Schema]:
    limits = config.limits
    lists = limits.max_requests_list
    return [
        _command("getNodeInfo", {}, [], "Node, milestone and network state."),
        _command("getTips", {}, [], "Solid transactions nothing approves yet."),
        _command(
            "findTransactions",
            {
                "addresses": _array(ADDRESS, lists),
                "bundles": _array(HASH, lists),
                "tags": _array(TAG, lists),
                "approvees": _array(HASH, lists),
            },
            [],
            "Hashes matching every given field (any value within a field); at least one "
            "field is required.",
        ),
        _command(
            "getTrytes",
            {"hashes": _array(HASH, limits.max_get_trytes)},
            ["hashes"],
            "Trytes by hash, in request order; 2673 nines for an unknown hash.",
        ),
        _command(
            "storeTransactions",
            {"trytes": _array(TRANSACTION_TRYTES, limits.max_get_trytes, 1)},
            ["trytes"],
            "Validate and store complete bundles; all or nothing.",
        ),
        _command(
            "broadcastTransactions",
            {"trytes": _array(TRANSACTION_TRYTES, limits.max_get_trytes, 1)},
            ["trytes"],
            "Validate, store and pass on to neighbours.",
        ),
        _command(
            "attachToTangle",
            {
                "trunkTransaction": HASH,
                "branchTransaction": HASH,
                "minWeightMagnitude": _integer(
                    1, max(limits.max_attach_weight, config.min_weight_magnitude)
                ),
                "trytes": _array(TRANSACTION_TRYTES, limits.max_attach_transactions, 1),
            },
            ["trunkTransaction", "branchTransaction", "minWeightMagnitude", "trytes"],
            "Remote proof of work; trytes last index first, answer tail first. The weight "
            f"used is at least the node's minimum ({config.min_weight_magnitude}).",
        ),
        _command("interruptAttachingToTangle", {}, [], "Stop a running attachToTangle."),
        _command(
            "getTransactionsToApprove",
            {"depth": _integer(0, limits.max_depth), "reference": HASH},
            ["depth"],
            "Two consistent tips to approve.",
        ),
        _command(
            "getBalances",
            {
                "addresses": _array(ADDRESS, lists),
                "threshold": _integer(1, 100),
                "tips": _array(HASH, lists),
            },
            ["addresses"],
            "Confirmed balances as of the latest solid milestone (or of the given tips).",
        ),
        _command(
            "getInclusionStates",
            {"transactions": _array(HASH, lists), "tips": _array(HASH, lists)},
            ["transactions"],
            "Whether each transaction is confirmed (referenced by the tips, if given).",
        ),
        _command(
            "wereAddressesSpentFrom",
            {"addresses": _array(ADDRESS, lists)},
            ["addresses"],
            "Whether a stored bundle spends from each address.",
        ),
        _command(
            "checkConsistency",
            {"tails": _array(HASH, lists, 1)},
            ["tails"],
            "Whether approving these tails keeps the ledger consistent.",
        ),
        _command("getNeighbors", {}, [], "Neighbours and their counters."),
        _command(
            "addNeighbors",
            {"uris": _array(NEIGHBOR_URI, 100)},
            ["uris"],
            "Add neighbours (http://, https:// or tcp:// meaning HTTP).",
        ),
        _command(
            "removeNeighbors", {"uris": _array(NEIGHBOR_URI, 100)}, ["uris"], "Remove neighbours."
        ),
        _command(
            "syncTransactions",
            {"since": _integer(0, 2**62), "limit": _integer(1, 1000)},
            ["since"],
            "This node's transactions after arrival number `since` (neighbours catch up).",
        ),
    ]


def _response(properties: Schema, title: str) -> Schema:
    return {
        "type": "object",
        "title": title,
        "properties": {**properties, "duration": {"type": "integer", "minimum": 0}},
        "required": [*properties, "duration"],
    }


def _responses() -> list[Schema]:
    hashes = {"type": "array", "items": HASH}
    booleans = {"type": "array", "items": {"type": "boolean"}}
    return [
        _response(
            {
                "appName": {"type": "string"},
                "appVersion": {"type": "string"},
                "latestMilestone": HASH,
                "latestMilestoneIndex": {"type": "integer", "minimum": 0},
                "latestSolidSubtangleMilestone": HASH,
                "latestSolidSubtangleMilestoneIndex": {"type": "integer", "minimum": 0},
                "neighbors": {"type": "integer", "minimum": 0},
                "tips": {"type": "integer", "minimum": 0},
                "time": {"type": "integer"},
                "coordinatorAddress": HASH,
            },
            "getNodeInfo",
        ),
        _response({"hashes": hashes}, "getTips / findTransactions"),
        _response({"trytes": {"type": "array", "items": TRANSACTION_TRYTES}}, "getTrytes"),
        _response(
            {"trunkTransaction": HASH, "branchTransaction": HASH}, "getTransactionsToApprove"
        ),
        _response(
            {
                "balances": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"}},
                "references": hashes,
                "milestoneIndex": {"type": "integer", "minimum": 0},
            },
            "getBalances",
        ),
        _response({"states": booleans}, "getInclusionStates / wereAddressesSpentFrom"),
        _response({"state": {"type": "boolean"}}, "checkConsistency"),
        _response({"neighbors": {"type": "array", "items": {"type": "object"}}}, "getNeighbors"),
        _response({"addedNeighbors": {"type": "integer", "minimum": 0}}, "addNeighbors"),
        _response({"removedNeighbors": {"type": "integer", "minimum": 0}}, "removeNeighbors"),
        _response(
            {
                "trytes": {"type": "array", "items": TRANSACTION_TRYTES},
                "next": {"type": "integer", "minimum": 0},
                "head": {"type": "integer", "minimum": 0},
            },
            "syncTransactions",
        ),
        _response({}, "storeTransactions / broadcastTransactions / interruptAttachingToTangle"),
    ]


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(config: NodeConfig) -> Schema:
    requests = {schema["title"]: schema for schema in _requests(config)}
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "duration": {"type": "integer"}},
        "required": ["error"],
    }
    exception = {
        "type": "object",
        "properties": {"exception": {"type": "string"}, "duration": {"type": "integer"}},
        "required": ["exception"],
    }
    explorer_params = {
        "transaction": [("hash", HASH)],
        "bundle": [("hash", HASH)],
        "address": [("address", ADDRESS)],
    }
    paths: Schema = {
        "/": {
            "post": {
                "operationId": "command",
                "summary": "Run one legacy IRI command",
                "description": (
                    "The IRI JSON API. Bad input is answered 400 with `error`; a runtime "
                    "fault 500 with `exception`. The admin commands (`admin_commands`: "
                    "addNeighbors, removeNeighbors, getNeighbors, interruptAttachingToTangle "
                    "by default) need a caller on the node's machine that is not a web page, "
                    "or `Authorization: Bearer <api_token>`; a web page of another origin may "
                    "only run the commands that read the Tangle."
                ),
                "parameters": [
                    {
                        "name": "X-IOTA-API-Version",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "example": "1"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [{"$ref": f"{_REFS}{name}"} for name in requests],
                                "discriminator": {
                                    "propertyName": "command",
                                    "mapping": {name: f"{_REFS}{name}" for name in requests},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"anyOf": _responses()}, "The command's answer"),
                    "400": _json(error, "Invalid input, over a limit, or refused"),
                    "401": _json(error, "A wrong API token or neighbour signature"),
                    "403": _json(error, "An admin command from elsewhere, or a web page"),
                    "408": _json(error, "The request body did not arrive in time"),
                    "429": _json(error, "Too much proof of work queued for this caller"),
                    "500": _json(exception, "A runtime fault on the node"),
                    "503": _json(error, "Starting, or the database is unavailable; retry"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
    }
    for kind, params in explorer_params.items():
        name, schema = params[0]
        paths[f"/explorer/api/{kind}/{{{name}}}"] = {
            "get": {
                "operationId": f"explorer_{kind}",
                "summary": f"Explorer view of a {kind}",
                "parameters": [{"name": name, "in": "path", "required": True, "schema": schema}],
                "responses": {
                    "200": _json({"type": "object"}, f"The {kind}"),
                    "400": _json(error, "Malformed parameter"),
                    "404": _json(error, "Not stored on this node"),
                },
            }
        }
    paths["/explorer/api/status"] = {
        "get": {
            "operationId": "explorer_status",
            "summary": "Milestones and counts for the explorer's header",
            "responses": {"200": _json({"type": "object"}, "The node's state")},
        }
    }
    paths["/explorer/api/mam"] = {
        "get": {
            "operationId": "explorer_mam",
            "summary": "Read a MAM channel from a root",
            "parameters": [
                {"name": "root", "in": "query", "required": True, "schema": HASH},
                {
                    "name": "mode",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["public", "private", "restricted"]},
                },
                {
                    "name": "sideKey",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[9A-Z]{1,81}$"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": _json({"type": "object"}, "The messages read"),
                "400": _json(error, "Malformed parameter"),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "P2P Energy Grid node (legacy IRI API)",
            "version": API_VERSION,
            "description": (
                "A private IOTA network node speaking the legacy IRI HTTP API: POST a JSON "
                "object with `command` and the header `X-IOTA-API-Version: 1`."
            ),
        },
        "paths": paths,
        "components": {"schemas": requests},
    }
