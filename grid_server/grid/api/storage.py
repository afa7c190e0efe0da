"""The storage API: set, get, list (paged) and delete items of a registration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RequestError
from .common import (
    MAX_PAGE,
    bearer_token,
    json_body,
    ok,
    query_int,
    registration_id,
    segment,
    total_pages,
)
from .context import services

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_PAGE_SIZE = 10


async def put_item(request: web.Request) -> web.Response:
    grid = services(request)
    registration = registration_id(request)
    context = segment(request, "context")
    item_id = segment(request, "itemId")
    if request.content_length is not None and request.content_length > grid.storage.max_item_bytes:
        raise RequestError(f"The item is larger than {grid.storage.max_item_bytes} bytes.", 413)
    value = await json_body(request)
    await grid.storage.put(registration, context, item_id, value, bearer_token(request))
    return ok()


async def get_item(request: web.Request) -> web.Response:
    registration = registration_id(request)
    context = segment(request, "context")
    item_id = segment(request, "itemId")
    item = await services(request).storage.get(
        registration, context, item_id, bearer_token(request)
    )
    return ok(item=item)


async def list_items(request: web.Request) -> web.Response:
    grid = services(request)
    registration = registration_id(request)
    context = segment(request, "context") if "context" in request.match_info else None
    page = query_int(request, ("page",), 0, 0, MAX_PAGE)
    page_size = query_int(
        request, ("pageSize", "page-size"), DEFAULT_PAGE_SIZE, 1, grid.config.max_page_size
    )
    result = await grid.storage.list_items(
        registration, context, page, page_size, bearer_token(request)
    )
    extra = {} if context is not None else {"contexts": result.contexts}
    return ok(
        ids=result.ids,
        items=result.items,
        totalPages=total_pages(result.total_items, page_size),
        totalItems=result.total_items,
        pageSize=page_size,
        page=page,
        **extra,
    )


async def delete_items(request: web.Request) -> web.Response:
    registration = registration_id(request)
    context = segment(request, "context") if "context" in request.match_info else None
    item_id = segment(request, "itemId") if "itemId" in request.match_info else None
    deleted = await services(request).storage.delete(
        registration, context, item_id, bearer_token(request)
    )
    return ok(deleted=deleted)
