"""The OpenAPI 3.1 document of the grid's HTTP API, served at ``/api/openapi.json``.

It is built from the running configuration, so it says whether the storage and
registration updates need a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import __doc__ as _grid_doc
from .common import REGISTRATION_ID_PATTERN, SEGMENT_PATTERN, TRYTES_81_PATTERN
from .context import services
from .forecast import OPENAPI_PATHS as FORECAST_PATHS
from .forecast import OPENAPI_SCHEMAS as FORECAST_SCHEMAS
from .settled_slots import SETTLED_SLOTS_SCHEMA, settled_slot_paths

if TYPE_CHECKING:
    from ..config import GridConfig

VERSION = "0.1.0"

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(description: str, schema: str = "Result") -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Invalid input; `message` names the parameter and why.",
        401: "The token (or side key) is required but missing.",
        403: "The token or side key does not match the registration.",
        404: "The registration or item does not exist.",
        409: "Conflicts with the registration's state or a storage limit.",
        413: "The request body (item) is too large.",
        422: "The channel's `hello` message could not be found.",
        429: "Too many new registrations from this address; `Retry-After` says when to retry.",
        503: "The grid's node or database is unavailable; try again later.",
    }
    return {str(status): _response(texts[status]) for status in statuses}


def _path_param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


REGISTRATION_ID = _path_param(
    "registrationId",
    REGISTRATION_ID_PATTERN,
    "The entity's registration id (8 to 128 unreserved URL characters).",
)
CONTEXT = _path_param("context", SEGMENT_PATTERN, "A folder of the registration's items.")
ITEM_ID = _path_param("itemId", SEGMENT_PATTERN, "The item's id within its context.")
SIDE_KEY = _path_param(
    "sideKey", TRYTES_81_PATTERN, "The side key of the registered channel (authenticates)."
)


def _paging(max_page_size: int) -> list[dict[str, Any]]:
    size = {"type": "integer", "minimum": 1, "maximum": max_page_size, "default": 10}
    return [
        {
            "name": "page",
            "in": "query",
            "required": False,
            "description": "Zero-based page number.",
            "schema": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 0},
        },
        {
            "name": "pageSize",
            "in": "query",
            "required": False,
            "description": "Items per page (the blueprint writes it `page-size`).",
            "schema": size,
        },
        {
            "name": "page-size",
            "in": "query",
            "required": False,
            "description": "The blueprint's spelling of `pageSize` (which wins if both are given).",
            "schema": size,
        },
    ]


def _schemas(config: GridConfig) -> dict[str, Any]:
    trytes = {"type": "string", "pattern": TRYTES_81_PATTERN}
    return {
        "Result": {
            "type": "object",
            "description": "Every answer of the grid has this shape.",
            "required": ["success", "message"],
            "properties": {
                "success": {"type": "boolean"},
                "message": {"type": "string", "description": "`OK` or why the request failed."},
            },
        },
        "RegistrationRequest": {
            "type": "object",
            "required": ["itemName", "itemType"],
            "dependentRequired": {"sideKey": ["root"]},
            # The same rule for generators that do not know dependentRequired.
            "anyOf": [{"required": ["root"]}, {"not": {"required": ["sideKey"]}}],
            "properties": {
                "itemName": {"type": "string", "minLength": 1, "maxLength": 256},
                "itemType": {"type": "string", "enum": ["producer", "consumer"]},
                "root": {**trytes, "description": "Root of the MAM channel the grid follows."},
                "sideKey": {
                    **trytes,
                    "description": "Side key of a restricted channel (needs `root`).",
                },
                "maxPrice": {
                    "type": "number",
                    "minimum": 0,
                    "description": "A consumer's standing bid: the most it pays per kWh of "
                    "local energy, in IOTA (optional; each registration states it anew, "
                    "a usage's own `maxPrice` wins for its period). Used by the pay-as-clear "
                    "and pay-as-bid mechanisms.",
                },
            },
        },
        "RegistrationResult": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "properties": {
                        "root": {
                            **trytes,
                            "description": "A consumer's return channel (payment requests).",
                        },
                        "sideKey": {**trytes, "description": "Side key of the return channel."},
                        "token": {
                            "type": "string",
                            "description": "Issued once when the registration is created: send it "
                            "as `Authorization: Bearer <token>` to the storage API and to update "
                            "the registration.",
                        },
                    },
                },
            ]
        },
        "ItemResult": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["item"],
                    "properties": {"item": {"description": "The stored JSON value."}},
                },
            ]
        },
        "ItemPage": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["ids", "items", "totalPages", "totalItems", "pageSize", "page"],
                    "properties": {
                        "ids": {"type": "array", "items": {"type": "string"}},
                        "items": {"type": "array", "items": {}},
                        "contexts": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Each item's context (listing a whole registration).",
                        },
                        "totalPages": {"type": "integer", "minimum": 0},
                        "totalItems": {"type": "integer", "minimum": 0},
                        "pageSize": {"type": "integer", "minimum": 1},
                        "page": {"type": "integer", "minimum": 0},
                    },
                },
            ]
        },
        "DeleteResult": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["deleted"],
                    "properties": {"deleted": {"type": "integer", "minimum": 0}},
                },
            ]
        },
        "StatementResult": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["statement"],
                    "properties": {"statement": _STATEMENT_DOCUMENT},
                },
            ]
        },
        "StatementList": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["items", "total", "page", "pageSize"],
                    "properties": {
                        "items": {"type": "array", "items": {"type": "object"}},
                        "total": {"type": "integer", "minimum": 0},
                        "page": {"type": "integer", "minimum": 0},
                        "pageSize": {"type": "integer", "minimum": 1},
                    },
                },
            ]
        },
        "SettledSlots": {"allOf": [_ref("Result"), SETTLED_SLOTS_SCHEMA]},
        "Health": {
            "allOf": [
                _ref("Result"),
                {
                    "type": "object",
                    "required": ["status", "database", "node", "slotSeconds"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded", "error"]},
                        "slotSeconds": {
                            "type": "integer",
                            "enum": [config.slot_seconds],
                            "description": "Length of a settlement slot in seconds: "
                            "households publish their readings once per slot.",
                        },
                        "database": {"type": "string"},
                        "node": {"type": "string"},
                        "leader": {"type": "boolean"},
                        "schemaRevision": {"type": ["string", "null"]},
                        "lastSettledSlot": {"type": ["integer", "null"]},
                        "consensusPrice": {
                            "type": ["number", "null"],
                            "minimum": 0,
                            "description": "Consensus price of the last slot that had one "
                            "(IOTA per kWh); null before any.",
                        },
                        "storageAuth": {"type": "string", "enum": [config.storage_auth]},
                        **_CURRENCY_PROPERTIES,
                    },
                },
            ]
        },
    }


_CURRENCY_PROPERTIES: dict[str, Any] = {
    "currency": {
        "type": "string",
        "pattern": "^[A-Z]{3}$",
        "description": "ISO 4217 code of the operator's fixed rate; absent without one.",
    },
    "currencyPerMillionIota": {
        "type": "string",
        "pattern": r"^[0-9]+(\.[0-9]+)?$",
        "description": "What 1,000,000 IOTA are worth in `currency`, as exact decimal text; "
        "absent without a rate.",
    },
}


_STATEMENT_DOCUMENT: dict[str, Any] = {
    "type": "object",
    "description": "A statement, credit note or preview: energy (mWh and kWh text), prices, "
    "amounts in IOTA, the balance (IOTA owed to the grid; negative: owed to the "
    "participant), currency figures where a rate is set, daily lines and payments.",
    "required": [
        "kind",
        "number",
        "registrationId",
        "period",
        "periodStart",
        "periodEnd",
        "energy",
        "amounts",
        "balance",
        "days",
        "payments",
    ],
    "properties": {
        "kind": {"type": "string", "enum": ["preview", "statement", "credit_note"]},
        "number": {"type": ["integer", "null"], "minimum": 1},
        "refersTo": {"type": ["integer", "null"], "minimum": 1},
        "registrationId": {"type": "string"},
        "period": {"type": "string"},
        "periodStart": {"type": "integer"},
        "periodEnd": {"type": "integer"},
        "energy": {"type": "object", "additionalProperties": {"type": "integer"}},
        "amounts": {
            "type": "object",
            "description": "IOTA per line. fixedFee: a consumer's fee for the period; once "
            "the statement is final the consumer's next payment request collects it (its "
            "owed includes it), as it does a hand-given credit note's amount.",
            "additionalProperties": {"type": "integer"},
        },
        "balance": {
            "type": "object",
            "required": ["opening", "change", "closing"],
            "additionalProperties": {"type": "integer"},
        },
        "currency": {"type": ["object", "null"]},
        "days": {"type": "array", "items": {"type": "object"}},
        "payments": {"type": "array", "items": {"type": "object"}},
    },
}


def _statement_paths(
    secured: list[dict[str, list[str]]], auth_errors: tuple[int, ...], max_page_size: int
) -> dict[str, Any]:
    errors = _errors(400, *auth_errors, 404, 503)
    formats = {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "json (the default), csv or pdf (a download).",
        "schema": {"type": "string", "enum": ["json", "csv", "pdf"]},
    }
    downloads = {
        "text/csv": {"schema": {"type": "string"}},
        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
    }

    def document_response(description: str) -> dict[str, Any]:
        response = _response(description, "StatementResult")
        response["content"].update(downloads)
        return response

    return {
        "/statements/{registrationId}": {
            "parameters": [REGISTRATION_ID],
            "get": {
                "operationId": "listStatements",
                "summary": "The participant's final statements and credit notes, newest first.",
                "tags": ["statements"],
                "security": secured,
                "parameters": _paging(min(max_page_size, 500)),
                "responses": {
                    "200": _response("A page of statements.", "StatementList"),
                    **errors,
                },
            },
        },
        "/statements/{registrationId}/preview": {
            "parameters": [REGISTRATION_ID],
            "get": {
                "operationId": "previewStatement",
                "summary": "The statement of a period as it stands now (not stored).",
                "tags": ["statements"],
                "security": secured,
                "parameters": [
                    {
                        "name": "period",
                        "in": "query",
                        "required": False,
                        "description": "2026-11 (month), 2026-Q4 (quarter) or 2026 (year), as "
                        "the grid's statement_period says; the current period without it.",
                        "schema": {"type": "string"},
                    },
                    formats,
                ],
                "responses": {"200": document_response("The preview."), **errors},
            },
        },
        "/statements/{registrationId}/{number}": {
            "parameters": [
                REGISTRATION_ID,
                {
                    "name": "number",
                    "in": "path",
                    "required": True,
                    "description": "The document's number.",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,10}$"},
                },
            ],
            "get": {
                "operationId": "getStatement",
                "summary": "One final statement or credit note, exactly as issued.",
                "tags": ["statements"],
                "security": secured,
                "parameters": [formats],
                "responses": {"200": document_response("The document."), **errors},
            },
        },
    }


def build_openapi(config: GridConfig) -> dict[str, Any]:
    """The OpenAPI document for a grid running with ``config``."""
    secured: list[dict[str, list[str]]] = (
        [{"bearerAuth": []}] if config.storage_auth == "token" else []
    )
    auth_errors = (401, 403) if config.storage_auth == "token" else ()
    storage_errors = (400, *auth_errors, 404, 503)
    item_body = {
        "required": True,
        "description": f"Any JSON value up to {config.max_item_bytes} bytes.",
        "content": {_JSON: {"schema": {}}},
    }

    def item_operations(prefix: str) -> dict[str, Any]:
        operations: dict[str, Any] = {
            "put": {
                "operationId": f"setItem{prefix}",
                "summary": "Create or replace an item.",
                "tags": ["storage"],
                "security": secured,
                "requestBody": item_body,
                "responses": {
                    "200": _response("Stored."),
                    **_errors(*storage_errors, 409, 413),
                },
            },
            "get": {
                "operationId": f"getItem{prefix}",
                "summary": "Read an item.",
                "tags": ["storage"],
                "security": secured,
                "responses": {
                    "200": _response("The item.", "ItemResult"),
                    **_errors(*storage_errors),
                },
            },
            "delete": {
                "operationId": f"deleteItem{prefix}",
                "summary": "Delete an item.",
                "tags": ["storage"],
                "security": secured,
                "responses": {
                    "200": _response("Deleted.", "DeleteResult"),
                    **_errors(*storage_errors),
                },
            },
        }
        return operations

    def folder_operations(name: str, what: str) -> dict[str, Any]:
        return {
            "get": {
                "operationId": f"list{name}",
                "summary": f"List the items of {what}, a page at a time.",
                "tags": ["storage"],
                "security": secured,
                "parameters": _paging(config.max_page_size),
                "responses": {
                    "200": _response("A page of items.", "ItemPage"),
                    **_errors(*storage_errors),
                },
            },
            "delete": {
                "operationId": f"delete{name}",
                "summary": f"Delete every item of {what}.",
                "tags": ["storage"],
                "security": secured,
                "responses": {
                    "200": _response("Deleted.", "DeleteResult"),
                    **_errors(*storage_errors),
                },
            },
        }

    registration_body = {
        "required": True,
        "content": {_JSON: {"schema": _ref("RegistrationRequest")}},
    }
    delete_registration = {
        "summary": "Remove a registration: goodbye on its return channel, storage deleted.",
        "tags": ["registration"],
        "security": [*secured, {}] if secured else [],
        "responses": {
            "200": _response("Removed."),
            **_errors(400, 401, 403, 404, 503),
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "P2P Energy Grid",
            "version": VERSION,
            "description": (_grid_doc or "").strip()
            + "\n\nEvery answer is `{success, message, ...}`; failures use 4xx statuses.",
        },
        "paths": {
            "/registration/{registrationId}": {
                "parameters": [REGISTRATION_ID],
                "put": {
                    "operationId": "register",
                    "summary": "Register (or update) a producer or consumer.",
                    "description": "With `root`, the channel's `hello` must be readable through "
                    "the grid's node. A consumer gets the grid's return channel for payment "
                    "requests. Updating an existing registration needs its token when token "
                    "authentication is on.",
                    "tags": ["registration"],
                    "security": [*secured, {}] if secured else [],
                    "requestBody": registration_body,
                    "responses": {
                        "200": _response("Registered.", "RegistrationResult"),
                        **_errors(400, *auth_errors, 409, 413, 422, 429, 503),
                        # The grid's registration quota, whatever the authentication.
                        "403": _response(
                            "The token or side key does not match the registration, or the "
                            "grid has its quota of registrations."
                        ),
                    },
                },
                "delete": {
                    **delete_registration,
                    "operationId": "deregister",
                    "description": "For a registration without a side key (token "
                    "authentication: with its token).",
                },
            },
            "/registration/{registrationId}/{sideKey}": {
                "parameters": [REGISTRATION_ID, SIDE_KEY],
                "delete": {
                    **delete_registration,
                    "security": [],
                    "operationId": "deregisterWithSideKey",
                    "description": "The side key authenticates the removal.",
                },
            },
            "/storage/item/{registrationId}/{context}/{itemId}": {
                "parameters": [REGISTRATION_ID, CONTEXT, ITEM_ID],
                **item_operations("ItemPath"),
            },
            "/storage/{registrationId}/{context}/{itemId}": {
                "parameters": [REGISTRATION_ID, CONTEXT, ITEM_ID],
                **item_operations(""),
            },
            "/storage/{registrationId}/{context}": {
                "parameters": [REGISTRATION_ID, CONTEXT],
                **folder_operations("Context", "a context"),
            },
            "/storage/{registrationId}": {
                "parameters": [REGISTRATION_ID],
                **folder_operations("Registration", "a registration (every context)"),
            },
            **_statement_paths(secured, auth_errors, config.max_page_size),
            **settled_slot_paths(
                REGISTRATION_ID,
                secured,
                _errors(400, *auth_errors, 404, 503),
                _response("The settled slots.", "SettledSlots"),
            ),
            **FORECAST_PATHS,
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Health of the grid, its database and its node.",
                    "tags": ["operations"],
                    "responses": {
                        "200": _response("Serving (`status` may be `degraded`).", "Health"),
                        "503": _response("The database is unavailable.", "Health"),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "tags": ["operations"],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {_JSON: {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": _schemas(config) | FORECAST_SCHEMAS},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token issued when the registration was created.",
            }
        }
    return document


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(services(request).config))
