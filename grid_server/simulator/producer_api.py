"""The producer registration API of the blueprint, hosted by each simulated producer.

``PUT /registration/{registrationId}`` with ``{itemName?, itemType?, root?, sideKey?}``
registers a source (its channel must start with ``hello``);
``DELETE /registration/{registrationId}/{sideKey}`` removes it. Answers carry
``{success, message}``; bad input gets a 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from p2p_energy_protocol.errors import IriApiError, NodeUnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from p2p_energy_protocol.client import IriClient

_HASH: Final = re.compile(r"[9A-Z]{81}")
MIN_ID_LENGTH: Final = 8
# Messages read while looking for a channel's hello.
HELLO_SEARCH_LIMIT: Final = 5


@dataclass
class SourceRegistration:
    registration_id: str
    item_name: str
    item_type: str
    root: str | None
    side_key: str | None


def _answer(message: str = "OK", status: int = 200) -> web.Response:
    return web.json_response({"success": status < 400, "message": message}, status=status)


def _invalid(name: str) -> web.Response:
    return _answer(f"The parameter '{name}' has an invalid value.", 400)


class ProducerRegistrationApi:
    """Keeps the producer's registered sources; ``on_change`` hears of every change."""

    def __init__(
        self,
        client: IriClient,
        on_change: Callable[[SourceRegistration, bool], Awaitable[None]],
    ) -> None:
        self._client = client
        self._on_change = on_change
        self.sources: dict[str, SourceRegistration] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/registration/{registrationId}", self.put),
            web.delete("/registration/{registrationId}/{sideKey}", self.delete),
        ]

    async def put(self, request: web.Request) -> web.Response:
        registration_id = request.match_info["registrationId"].strip()
        if len(registration_id) < MIN_ID_LENGTH:
            return _invalid("registrationId")
        try:
            body: Any = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _answer("The request body must be a JSON object.", 400)
        if not isinstance(body, dict):
            return _answer("The request body must be a JSON object.", 400)
        fields: dict[str, str | None] = {}
        for name in ("itemName", "itemType", "root", "sideKey"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                return _invalid(name)
            fields[name] = value
        for name in ("root", "sideKey"):
            value = fields[name]
            if value is not None and not _HASH.fullmatch(value):
                return _invalid(name)
        if (fields["root"] is None) != (fields["sideKey"] is None):
            return _answer("root and sideKey must be given together.", 400)
        existing = self.sources.get(registration_id)
        registration = SourceRegistration(
            registration_id=registration_id,
            item_name=fields["itemName"] or (existing.item_name if existing else ""),
            item_type=fields["itemType"] or (existing.item_type if existing else ""),
            root=fields["root"] or (existing.root if existing else None),
            side_key=fields["sideKey"] or (existing.side_key if existing else None),
        )
        if fields["root"] is not None and not await self._has_hello(
            fields["root"], fields["sideKey"]
        ):
            return _answer("The channel does not start with a hello message.", 400)
        self.sources[registration_id] = registration
        await self._on_change(registration, True)
        return _answer()

    async def _has_hello(self, root: str, side_key: str | None) -> bool:
        try:
            messages = await self._client.fetch_mam(
                root, "restricted", side_key, limit=HELLO_SEARCH_LIMIT
            )
        except (IriApiError, NodeUnavailableError):
            return False
        return any(
            isinstance(entry.data, dict) and entry.data.get("command") == "hello"
            for entry in messages
        )

    async def delete(self, request: web.Request) -> web.Response:
        registration_id = request.match_info["registrationId"].strip()
        registration = self.sources.get(registration_id)
        if registration is None:
            return _answer("The registration does not exist.", 404)
        if registration.side_key != request.match_info["sideKey"]:
            return _invalid("sideKey")
        del self.sources[registration_id]
        await self._on_change(registration, False)
        return _answer()
