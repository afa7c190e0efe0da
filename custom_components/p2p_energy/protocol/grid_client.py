"""Async clients for the blueprint's web APIs: the grid's and a producer's.

* :class:`GridClient`: the grid's registration API (producers and consumers) and
  storage API, a participant's statements and settled slots, plus its health endpoint
  (with the operator's currency rate, :class:`CurrencyRate`).
* :class:`ProducerClient`: a producer's registration API, where sources register.

Both take an injected :class:`aiohttp.ClientSession` (Home Assistant passes its
shared session). Every server answer is ``{"success", "message", ...}``; a refusal
raises :class:`GridApiError` with the server's message and HTTP status, a network
failure, timeout, 5xx or non-API answer raises :class:`GridUnavailableError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from yarl import URL

from .errors import GridApiError, GridUnavailableError
from .price_forecast import PriceForecast, parse_price_forecast

if TYPE_CHECKING:
    from collections.abc import Mapping

ItemType = Literal["producer", "consumer"]
IOTA_PER_RATE_UNIT = 1_000_000
MILLIWH_PER_KWH = 1_000_000
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_RATE = re.compile(r"[0-9]{1,13}(\.[0-9]{1,18})?")
_CENTS = Decimal("0.01")
# Marks "no request body" so that a JSON null item can still be sent.
_NO_BODY: Any = object()


@dataclass(frozen=True, slots=True)
class RegistrationReply:
    """What the grid answers to a registration."""

    root: str | None
    """A consumer's return channel root (payment requests), else None."""
    side_key: str | None
    """The return channel's side key."""
    token: str | None
    """Issued once when the registration is created (when the grid uses tokens):
    keep it; the storage API and later updates need it."""


@dataclass(frozen=True, slots=True)
class StoragePage:
    ids: list[str]
    items: list[Any]
    contexts: list[str] | None
    """Each item's context, when a whole registration was listed."""
    total_pages: int
    total_items: int
    page_size: int
    page: int


@dataclass(frozen=True, slots=True)
class CurrencyRate:
    """The grid operator's fixed rate: ``per_million_iota`` of ``currency`` buy 1,000,000 IOTA.

    Conversions are exact decimals, as the grid's statements compute them.
    """

    currency: str
    """ISO 4217 code, e.g. EUR."""
    per_million_iota: Decimal

    def value(self, iota: int | float) -> Decimal:
        """``iota`` in the currency, exactly (a sum of many slots is rounded once, later)."""
        return Decimal(repr(iota) if isinstance(iota, float) else iota) * (
            self.per_million_iota / IOTA_PER_RATE_UNIT
        )

    def amount(self, iota: int) -> Decimal:
        """``iota`` in the currency rounded half-even to the cent, as on a statement."""
        return self.value(iota).quantize(_CENTS, ROUND_HALF_EVEN)


def currency_rate_of(answer: Mapping[str, Any]) -> CurrencyRate | None:
    """The rate a grid's answer carries (``currency``, ``currencyPerMillionIota``);
    None when it has none or an unusable one."""
    code, rate = answer.get("currency"), answer.get("currencyPerMillionIota")
    if not isinstance(code, str) or not isinstance(rate, str):
        return None
    if not _CURRENCY_CODE.fullmatch(code) or not _RATE.fullmatch(rate):
        return None
    try:
        value = Decimal(rate)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        return None
    return CurrencyRate(code, value) if value > 0 else None


@dataclass(frozen=True, slots=True)
class StatementPage:
    """One page of a participant's final statements and credit notes, newest first."""

    items: list[dict[str, Any]]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class SettledSlot:
    """What the grid billed (consumer) or paid (producer) one participant in one slot."""

    start_ms: int
    end_ms: int
    energy_milliwh: int
    amount: int
    """IOTA."""

    @property
    def energy_kwh(self) -> Decimal:
        return Decimal(self.energy_milliwh) / MILLIWH_PER_KWH


@dataclass(frozen=True, slots=True)
class SettledSlots:
    """A page of a participant's settled slots, oldest first."""

    slots: list[SettledSlot]
    settled_until: int | None
    """End (ms) of the grid's last settled slot: no earlier slot is still to come."""
    next_from: int | None
    """Where the next page starts; None on the last page."""
    rate: CurrencyRate | None


class _ApiClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        base = URL(url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._session = session
        self._base = base
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def url(self) -> str:
        return str(self._base)

    def _url(self, *segments: str) -> URL:
        url = self._base
        for segment in segments:
            if not isinstance(segment, str) or not segment:
                raise ValueError(f"a path segment must be a non-empty string, got {segment!r}")
            url = url / segment
        return url

    async def _request(
        self,
        method: str,
        url: URL,
        *,
        body: Any = _NO_BODY,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not _NO_BODY:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, separators=(",", ":"))
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                params=params,
                timeout=self._timeout,
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise GridUnavailableError(
                f"{method} {url} failed: {err or type(err).__name__}"
            ) from err
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            raise GridUnavailableError(
                f"{method} {url} answered HTTP {status} without an API response", status
            )
        message = answer.get("message")
        text = message if isinstance(message, str) else f"HTTP {status}"
        if status >= 500:
            raise GridUnavailableError(text, status)
        if status >= 400 or not answer["success"]:
            raise GridApiError(text, status)
        return answer


class GridClient(_ApiClient):
    """The grid's registration and storage APIs."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, timeout: float = 60.0) -> None:
        super().__init__(session, url, timeout)

    async def register(
        self,
        registration_id: str,
        item_name: str,
        item_type: ItemType,
        *,
        root: str | None = None,
        side_key: str | None = None,
        token: str | None = None,
        max_price: float | None = None,
    ) -> RegistrationReply:
        """Register or update a producer or consumer (with its channel's root/side key).

        A consumer's ``max_price`` (IOTA per kWh) is its standing bid for local energy;
        a registration without one has no bid (the field is then not sent at all).
        """
        body: dict[str, Any] = {"itemName": item_name, "itemType": item_type}
        if root is not None:
            body["root"] = root
        if side_key is not None:
            body["sideKey"] = side_key
        if max_price is not None:
            body["maxPrice"] = max_price
        answer = await self._request(
            "PUT", self._url("registration", registration_id), body=body, token=token
        )
        return RegistrationReply(
            root=_optional_str(answer, "root"),
            side_key=_optional_str(answer, "sideKey"),
            token=_optional_str(answer, "token"),
        )

    async def deregister(
        self, registration_id: str, side_key: str | None = None, *, token: str | None = None
    ) -> None:
        """Remove a registration (its side key authenticates; else its token)."""
        segments = ["registration", registration_id] + ([side_key] if side_key else [])
        await self._request("DELETE", self._url(*segments), token=token)

    async def set_item(
        self,
        registration_id: str,
        context: str,
        item_id: str,
        item: Any,
        *,
        token: str | None = None,
    ) -> None:
        """Create or replace a JSON item."""
        await self._request(
            "PUT",
            self._url("storage", "item", registration_id, context, item_id),
            body=item,
            token=token,
        )

    async def get_item(
        self, registration_id: str, context: str, item_id: str, *, token: str | None = None
    ) -> Any:
        answer = await self._request(
            "GET", self._url("storage", registration_id, context, item_id), token=token
        )
        return answer.get("item")

    async def list_items(
        self,
        registration_id: str,
        context: str | None = None,
        *,
        page: int = 0,
        page_size: int = 10,
        token: str | None = None,
    ) -> StoragePage:
        """One page of a context's items (or of every context of the registration)."""
        segments = ["storage", registration_id] + ([context] if context is not None else [])
        answer = await self._request(
            "GET",
            self._url(*segments),
            token=token,
            params={"page": str(page), "pageSize": str(page_size)},
        )
        contexts = answer.get("contexts")
        return StoragePage(
            ids=_list(answer, "ids"),
            items=_list(answer, "items"),
            contexts=[str(c) for c in contexts] if isinstance(contexts, list) else None,
            total_pages=_int(answer, "totalPages"),
            total_items=_int(answer, "totalItems"),
            page_size=_int(answer, "pageSize"),
            page=_int(answer, "page") if "page" in answer else page,
        )

    async def delete_items(
        self,
        registration_id: str,
        context: str | None = None,
        item_id: str | None = None,
        *,
        token: str | None = None,
    ) -> int:
        """Delete an item, a whole context or all of a registration's items."""
        if item_id is not None and context is None:
            raise ValueError("an item id needs its context")
        segments = ["storage", registration_id]
        segments += [s for s in (context, item_id) if s is not None]
        answer = await self._request("DELETE", self._url(*segments), token=token)
        deleted = answer.get("deleted", 0)
        return deleted if isinstance(deleted, int) else 0

    async def health(self) -> dict[str, Any]:
        """The grid's health report (raises GridUnavailableError when it is unhealthy)."""
        return await self._request("GET", self._url("health"))

    async def currency_rate(self) -> CurrencyRate | None:
        """The operator's currency rate from the health report (None without one)."""
        return currency_rate_of(await self.health())

    async def list_statements(
        self, registration_id: str, *, page: int = 0, page_size: int = 50, token: str | None = None
    ) -> StatementPage:
        """A page of the participant's final statements and credit notes, newest first."""
        answer = await self._request(
            "GET",
            self._url("statements", registration_id),
            token=token,
            params={"page": str(page), "pageSize": str(page_size)},
        )
        items = _list(answer, "items")
        if not all(isinstance(item, dict) for item in items):
            raise GridUnavailableError("the answer's 'items' are not objects")
        return StatementPage(
            items=items,
            total=_int(answer, "total"),
            page=_int(answer, "page"),
            page_size=_int(answer, "pageSize"),
        )

    async def statement(
        self, registration_id: str, number: int, *, token: str | None = None
    ) -> dict[str, Any]:
        """Final statement or credit note ``number`` of the participant, as issued."""
        answer = await self._request(
            "GET", self._url("statements", registration_id, str(number)), token=token
        )
        return _object(answer, "statement")

    async def statement_preview(
        self, registration_id: str, period: str | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The statement of ``period`` (the current one without it) as it stands now."""
        answer = await self._request(
            "GET",
            self._url("statements", registration_id, "preview"),
            token=token,
            params={"period": period} if period else None,
        )
        return _object(answer, "statement")

    async def latest_statement(
        self, registration_id: str, *, token: str | None = None
    ) -> dict[str, Any] | None:
        """The participant's newest final document (None before the first)."""
        page = await self.list_statements(registration_id, page_size=1, token=token)
        if not page.items:
            return None
        number = page.items[0].get("number")
        if isinstance(number, bool) or not isinstance(number, int):
            raise GridUnavailableError("the statement list has no number")
        return await self.statement(registration_id, number, token=token)

    async def settled_slots(
        self,
        registration_id: str,
        since_ms: int = 0,
        *,
        page_size: int = 500,
        token: str | None = None,
    ) -> SettledSlots:
        """A page of the participant's bills or payouts per settled slot, from ``since_ms``."""
        answer = await self._request(
            "GET",
            self._url("settlements", registration_id),
            token=token,
            params={"from": str(since_ms), "pageSize": str(page_size)},
        )
        slots = []
        for row in _list(answer, "slots"):
            if not isinstance(row, dict):
                raise GridUnavailableError("a settled slot is not an object")
            slots.append(
                SettledSlot(
                    start_ms=_int(row, "slotStart"),
                    end_ms=_int(row, "slotEnd"),
                    energy_milliwh=_int(row, "energyMilliwh"),
                    amount=_int(row, "amount"),
                )
            )
        return SettledSlots(
            slots=slots,
            settled_until=_optional_int(answer, "settledUntil"),
            next_from=_optional_int(answer, "next"),
            rate=currency_rate_of(answer),
        )

    # The price forecast (issue 16) --------------------------------------------------

    async def price_forecast(self) -> PriceForecast:
        """The grid's indicative price of each slot of the next 24 hours (public)."""
        return parse_price_forecast(await self._request("GET", self._url("forecast")))


class ProducerClient(_ApiClient):
    """A producer's registration API (``PUT/DELETE {url}/registration/...``)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, timeout: float = 30.0) -> None:
        super().__init__(session, url, timeout)

    async def register(
        self,
        registration_id: str,
        *,
        item_name: str | None = None,
        item_type: str | None = None,
        root: str | None = None,
        side_key: str | None = None,
    ) -> None:
        """Register a source with the producer (its channel's root and side key)."""
        body = {
            key: value
            for key, value in (
                ("itemName", item_name),
                ("itemType", item_type),
                ("root", root),
                ("sideKey", side_key),
            )
            if value is not None
        }
        await self._request("PUT", self._url("registration", registration_id), body=body)

    async def deregister(self, registration_id: str, side_key: str) -> None:
        await self._request("DELETE", self._url("registration", registration_id, side_key))


def _optional_str(answer: Mapping[str, Any], key: str) -> str | None:
    value = answer.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GridUnavailableError(f"the answer's {key!r} is not text")
    return value


def _list(answer: Mapping[str, Any], key: str) -> list[Any]:
    value = answer.get(key)
    if not isinstance(value, list):
        raise GridUnavailableError(f"the answer has no {key!r} list")
    return value


def _object(answer: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = answer.get(key)
    if not isinstance(value, dict):
        raise GridUnavailableError(f"the answer has no {key!r} object")
    return value


def _optional_int(answer: Mapping[str, Any], key: str) -> int | None:
    return None if answer.get(key) is None else _int(answer, key)


def _int(answer: Mapping[str, Any], key: str) -> int:
    value = answer.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridUnavailableError(f"the answer has no integer {key!r}")
    return value
