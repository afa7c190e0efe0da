"""The registration API: PUT and DELETE of a registration."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from p2p_energy_protocol.payloads import MAX_PRICE_IOTA_PER_KWH

from ..errors import RequestError
from ..registrations import RegistrationInput, RegistrationRateError
from ..units import price_to_micro
from .common import (
    MAX_NAME_LENGTH,
    bearer_token,
    failure,
    invalid,
    json_body,
    ok,
    registration_id,
    trytes_81,
)
from .context import services

if TYPE_CHECKING:
    from aiohttp import web
    from p2p_energy_protocol.grid_client import ItemType

ITEM_TYPES: tuple[ItemType, ...] = ("producer", "consumer")


def parse_registration(registration: str, body: Any) -> RegistrationInput:
    """Validate a registration request body."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", 400)
    name = body.get("itemName")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise invalid("itemName", f"It must be text of 1 to {MAX_NAME_LENGTH} characters.")
    if not name.isprintable():
        raise invalid("itemName", "It must not contain control characters.")
    item_type = body.get("itemType")
    if item_type == "producer":
        kind: ItemType = "producer"
    elif item_type == "consumer":
        kind = "consumer"
    else:
        raise invalid("itemType", "It must be 'producer' or 'consumer'.")
    max_price = body.get("maxPrice")
    if max_price is not None:
        if kind != "consumer":
            raise invalid("maxPrice", "Only a consumer bids a maximum price.")
        if (
            isinstance(max_price, bool)
            or not isinstance(max_price, int | float)
            or not math.isfinite(max_price)
            or not 0 <= max_price <= MAX_PRICE_IOTA_PER_KWH
        ):
            raise invalid("maxPrice", "It must be a non-negative number of IOTA per kWh.")
    root = body.get("root")
    side_key = body.get("sideKey")
    if root is not None:
        root = trytes_81(root, "root")
    if side_key is not None:
        side_key = trytes_81(side_key, "sideKey")
        if root is None:
            raise invalid("sideKey", "A side key needs the channel's 'root'.")
    return RegistrationInput(
        registration,
        name.strip(),
        kind,
        root,
        side_key,
        None if max_price is None else price_to_micro(max_price),
    )


async def put_registration(request: web.Request) -> web.Response:
    registration = registration_id(request)
    data = parse_registration(registration, await json_body(request))
    try:
        outcome = await services(request).registrations.register(
            data, bearer_token(request), request.remote
        )
    except RegistrationRateError as err:
        response = failure(err.status, err.message)
        response.headers["Retry-After"] = str(err.retry_after)
        return response
    extra: dict[str, Any] = {}
    if outcome.return_root is not None:
        extra["root"] = outcome.return_root
        extra["sideKey"] = outcome.return_side_key
    if outcome.token is not None:
        extra["token"] = outcome.token
    return ok(**extra)


async def delete_registration(request: web.Request) -> web.Response:
    registration = registration_id(request)
    side_key = request.match_info.get("sideKey")
    if side_key is not None:
        side_key = trytes_81(side_key, "sideKey")
    await services(request).registrations.deregister(registration, side_key, bearer_token(request))
    return ok()
