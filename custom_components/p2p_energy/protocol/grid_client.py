"""Async clients for the blueprint's web APIs: the grid's and a producer's.

* :class:`GridClient`: the grid's registration API (producers and consumers) and
  storage API, plus its health endpoint.
* :class:`ProducerClient`: a producer's registration API, where sources register.

Both take an injected :class:`aiohttp.ClientSession` (Home Assistant passes its
shared session). Every server answer is ``{"success", "message", ...}``; a refusal
raises :class:`GridApiError` with the server's message and HTTP status, a network
failure, timeout, 5xx or non-API answer raises :class:`GridUnavailableError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from yarl import URL

from .errors import GridApiError, GridUnavailableError

if TYPE_CHECKING:
    from collections.abc import Mapping

ItemType = Literal["producer", "consumer"]
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
    ) -> RegistrationReply:
        """Register or update a producer or consumer (with its channel's root/side key)."""
        body: dict[str, Any] = {"itemName": item_name, "itemType": item_type}
        if root is not None:
            body["root"] = root
        if side_key is not None:
            body["sideKey"] = side_key
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


def _int(answer: Mapping[str, Any], key: str) -> int:
    value = answer.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridUnavailableError(f"the answer has no integer {key!r}")
    return value
