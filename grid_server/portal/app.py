"""The portal's routes on the grid's aiohttp application.

``setup_portal(app, config, data_dir=..., node_url=...)`` mounts everything under
``/portal/``: the page, its static files (Chart.js is served from here, never from a
CDN), the login, and a JSON API the page reads. Operators sign in with the password
whose hash is configured; a request that comes through Home Assistant ingress (the
``X-Ingress-Path`` header *and* a peer address among the trusted ingress addresses)
is already authenticated by Home Assistant. Every URL the page uses is relative, so
the same files work at ``/portal/`` and behind the ingress prefix.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.errors import IriApiError, NodeUnavailableError
from sqlalchemy.exc import DBAPIError

from ..grid.api.context import SERVICES_KEY, GridServices
from ..http_safety import SECURITY_HEADERS
from . import queries, whatif
from .auth import verify_password
from .queries import PageRequest
from .sessions import PortalSessions
from .statements import CSRF_HEADER, statement_routes
from .throttle import LoginThrottle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sqlalchemy.orm import Session

    from .config import PortalConfig

_LOGGER = logging.getLogger(__name__)

PREFIX: Final = "/portal"
COOKIE: Final = "p2p_portal_session"
# A random nonce the sign-in form's CSRF token is bound to (before there is a session).
LOGIN_COOKIE: Final = "p2p_portal_signin"
# Set at a successful sign-in: this browser is let past the throttle that holds others.
DEVICE_COOKIE: Final = "p2p_portal_device"
CSRF_FIELD: Final = "csrf"
_DEVICE_MAX_AGE: Final = 365 * 86_400
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{20,64}")
_FORM_TOKEN: Final = re.compile(rf'name="{CSRF_FIELD}" value="([^"]*)"')
_HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = _HERE / "static"
INDEX_PAGE: Final = _HERE / "pages" / "index.html"
LOGIN_PAGE: Final = _HERE / "pages" / "login.html"
_DEFAULT_PAGE_SIZE: Final = 25
_PRICE_POINTS: Final = 500


@dataclass
class PortalState:
    config: PortalConfig
    sessions: PortalSessions
    grid: GridServices
    node_url: str | None
    throttle: LoginThrottle
    http: aiohttp.ClientSession | None = None


PORTAL_KEY: Final = web.AppKey("portal", PortalState)


def setup_portal(
    app: web.Application, config: PortalConfig, *, data_dir: Path, node_url: str | None
) -> None:
    """Mount the portal on the grid's ``app`` (created by ``create_app``)."""
    if not config.enabled:
        _LOGGER.info("the portal is disabled")
        return
    grid = app[SERVICES_KEY]
    state = PortalState(
        config=config,
        sessions=PortalSessions(
            grid.db,
            config.session_secret_bytes(data_dir),
            max_age_seconds=config.session_max_age,
            password_hash=config.password_hash,
        ),
        grid=grid,
        node_url=node_url.rstrip("/") if node_url else None,
        throttle=LoginThrottle(
            budget=config.login_budget, budget_window=config.login_budget_window
        ),
    )
    app[PORTAL_KEY] = state
    app.cleanup_ctx.append(_portal_running)
    api = f"{PREFIX}/api"
    app.add_routes(
        [
            web.get(PREFIX, _redirect_to_portal, allow_head=False),
            web.get(f"{PREFIX}/", _page_handler(INDEX_PAGE), allow_head=False),
            web.get(f"{PREFIX}/login", _login_page, allow_head=False),
            web.post(f"{PREFIX}/login", _login),
            web.post(f"{PREFIX}/logout", _logout),
            web.get(f"{api}/session", _api(_session_info), allow_head=False),
            web.get(f"{api}/overview", _api(_overview), allow_head=False),
            web.get(f"{api}/entities", _api(_entities), allow_head=False),
            web.get(f"{api}/entities/{{registrationId}}", _api(_entity), allow_head=False),
            web.get(f"{api}/prices", _api(_prices), allow_head=False),
            web.get(f"{api}/settlements", _api(_settlements), allow_head=False),
            web.get(f"{api}/payments", _api(_payments), allow_head=False),
            web.get(f"{api}/node", _api(_node), allow_head=False),
            web.get(f"{api}/replay", _api(_what_if), allow_head=False),
            *statement_routes(api, authentication, _change_allowed, _secure),
            web.static(f"{PREFIX}/static", STATIC_DIR, append_version=False),
        ]
    )
    if config.password_hash is None:
        _LOGGER.info("no portal password is set: the portal opens only through ingress")
    if config.unsafe_ingress_addresses:
        _LOGGER.warning(
            "the portal trusts ingress from %s (allow_unsafe_ingress_addresses): every "
            "program that can connect from there opens the portal without a password",
            ", ".join(config.unsafe_ingress_addresses),
        )


async def _portal_running(app: web.Application) -> AsyncIterator[None]:
    state = app[PORTAL_KEY]
    # A new password (or session secret) ends the sessions opened with the old one. They
    # are refused anyway (their fingerprint differs); this only tidies, so a database
    # that is briefly away does not stop the grid from starting.
    try:
        await state.sessions.forget_other_passwords()
    except DBAPIError as err:
        _LOGGER.warning("could not remove the sessions of an old portal password: %s", err)
    state.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    yield
    await state.http.close()
    state.http = None


def _state(request: web.Request) -> PortalState:
    return request.app[PORTAL_KEY]


def is_ingress(request: web.Request, config: PortalConfig) -> bool:
    """Through Home Assistant ingress: the header *and* a trusted peer address."""
    if "X-Ingress-Path" not in request.headers or request.remote is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:
        return False
    trusted = {ipaddress.ip_address(address) for address in config.trusted_ingress_addresses}
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return peer in trusted


async def authentication(request: web.Request) -> str | None:
    """How the request is authenticated: ``"ingress"``, ``"password"`` or None."""
    state = _state(request)
    if is_ingress(request, state.config):
        return "ingress"
    if await state.sessions.is_valid(request.cookies.get(COOKIE)):
        return "password"
    return None


def _cross_site(request: web.Request) -> bool:
    """A browser says this request comes from another site (a form on a foreign page)."""
    return request.headers.get("Sec-Fetch-Site", "") == "cross-site"


def _change_allowed(request: web.Request) -> bool:
    """A change (POST) from the portal's own page: same site, a JSON body, and for a
    password session its CSRF token in the header (ingress: Home Assistant's session)."""
    if _cross_site(request) or request.content_type != "application/json":
        return False
    state = _state(request)
    if is_ingress(request, state.config):
        return True
    token = request.cookies.get(COOKIE)
    return token is not None and state.sessions.matches(
        state.sessions.csrf_token(token), request.headers.get(CSRF_HEADER)
    )


def _secure(response: web.StreamResponse, *, cache: bool = False) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    return response


async def _redirect_to_portal(_request: web.Request) -> web.StreamResponse:
    # Relative, so it also works under the ingress prefix.
    raise web.HTTPFound("portal/")


def _page_handler(page: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if await authentication(request) is None:
            raise web.HTTPFound("login")
        return _secure(web.FileResponse(page, headers={"Content-Type": "text/html"}))

    return handler


def _login_html(message: str | None, can_login: bool, csrf: str = "") -> str:
    template = LOGIN_PAGE.read_text(encoding="utf-8")
    notice = f'<p class="notice" role="alert">{html.escape(message)}</p>' if message else ""
    return (
        template.replace("{{notice}}", notice)
        .replace("{{disabled}}", "" if can_login else "disabled")
        .replace("{{csrf}}", html.escape(csrf, quote=True))
    )


def login_form_token(page: str) -> str:
    """The CSRF token of a sign-in page ("" if it has none), for programs that sign in."""
    match = _FORM_TOKEN.search(page)
    return html.unescape(match.group(1)) if match else ""


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    _secure(response)
    return response


def _cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=f"{PREFIX}/",
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


def _login_form(
    request: web.Request, message: str | None = None, status: int = 200
) -> web.StreamResponse:
    """The sign-in page with a CSRF token bound to this browser's sign-in cookie."""
    state = _state(request)
    if state.config.password_hash is None:
        return _html(
            _login_html(
                "No operator password is set. Open the portal from the Home Assistant "
                "sidebar, or set a password in the grid's configuration.",
                can_login=False,
            ),
            403 if request.method == "POST" else 200,
        )
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not _NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(24)
    response = _html(
        _login_html(message, can_login=True, csrf=state.sessions.login_csrf_token(nonce)),
        status,
    )
    _cookie(response, request, LOGIN_COOKIE, nonce, 86_400)
    return response


async def _login_page(request: web.Request) -> web.StreamResponse:
    if await authentication(request) is not None:
        raise web.HTTPFound("./")
    return _login_form(request)


async def _login(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    if state.config.password_hash is None:
        return _login_form(request)
    form = await request.post()
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    expected = state.sessions.login_csrf_token(nonce)
    if (
        _cross_site(request)
        or not _NONCE.fullmatch(nonce)
        or not state.sessions.matches(expected, form.get(CSRF_FIELD))
    ):
        _LOGGER.warning("portal sign-in without a valid form token from %s", request.remote)
        return _login_form(request, "The sign-in form expired. Please try again.", 403)
    address = request.remote
    device = state.sessions.device(request.cookies.get(DEVICE_COOKIE))
    refusal = state.throttle.begin(address, device)
    if refusal is not None:
        wait = int(refusal.wait_seconds) + 1
        message = f"Too many sign-in attempts. Try again in {wait} seconds."
        if refusal.whole_grid:
            message += " Home Assistant's sidebar opens the portal without a password."
        response = _login_form(request, message, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    password = form.get("password")
    valid = isinstance(password, str) and await asyncio.get_running_loop().run_in_executor(
        None, verify_password, password, state.config.password_hash
    )
    if not valid:
        _LOGGER.warning("failed portal sign-in from %s", address)
        return _login_form(request, "Wrong password.", 401)
    state.throttle.succeeded(address, device)
    response = web.HTTPFound("./")
    _cookie(
        response,
        request,
        COOKIE,
        await state.sessions.open(address),
        state.config.session_max_age,
    )
    if device is None:
        _cookie(response, request, DEVICE_COOKIE, state.sessions.new_device(), _DEVICE_MAX_AGE)
    response.del_cookie(LOGIN_COOKIE, path=f"{PREFIX}/")
    _LOGGER.info("portal sign-in from %s", address)
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    """Sign out: the session is revoked on the server, not only forgotten by the browser."""
    state = _state(request)
    token = request.cookies.get(COOKIE)
    form = await request.post()
    if await state.sessions.is_valid(token):
        assert token is not None
        if _cross_site(request) or not state.sessions.matches(
            state.sessions.csrf_token(token), form.get(CSRF_FIELD)
        ):
            raise web.HTTPForbidden(
                text="Signing out needs the portal's own form.", headers=SECURITY_HEADERS
            )
        await state.sessions.revoke(token)
    # Without an open session there is nothing to end: on to the sign-in page.
    response = web.HTTPFound("login")
    response.del_cookie(COOKIE, path=f"{PREFIX}/")
    raise response


def _api(
    handler: Callable[[web.Request, PortalState], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """JSON answers for signed-in operators; 401 otherwise, 400 for bad parameters."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if await authentication(request) is None:
            body = {"success": False, "message": "Sign in to use the portal."}
            return _secure(web.json_response(body, status=401))
        try:
            data = await handler(request, _state(request))
        except queries.QueryError as err:
            body = {"success": False, "message": str(err)}
            return _secure(web.json_response(body, status=400))
        if data is None:
            body = {"success": False, "message": "There is no such resource."}
            return _secure(web.json_response(body, status=404))
        return _secure(web.json_response({"success": True, "message": "OK", "data": data}))

    return wrapper


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        raise queries.QueryError(f"'{name}' must be a whole number from {low} to {high}")
    return int(raw)


def _page_request(request: web.Request, state: PortalState) -> PageRequest:
    size = _query_int(request, "pageSize", _DEFAULT_PAGE_SIZE, 1, state.config.max_page_size)
    return PageRequest(_query_int(request, "page", 0, 0, 10_000_000), size)


async def _read[T](state: PortalState, function: Callable[[Session], T]) -> T:
    return await state.grid.db.run_read(function)


async def _session_info(request: web.Request, state: PortalState) -> dict[str, Any]:
    via = await authentication(request)
    token = request.cookies.get(COOKIE)
    return {
        "via": via,
        # For the sign-out form (a signed-in operator only).
        "csrfToken": state.sessions.csrf_token(token) if via == "password" and token else None,
        "slotSeconds": state.grid.config.slot_seconds,
        "pricingStrategy": state.grid.config.pricing_strategy,
        "gridCutPercent": state.grid.config.grid_cut_percent,
        "explorer": explorer_base(state),
    }


async def _overview(_request: web.Request, state: PortalState) -> dict[str, Any]:
    return await _read(state, queries.overview)


async def _entities(request: web.Request, state: PortalState) -> dict[str, Any]:
    kind = request.query.get("type", "all")
    if kind not in ("all", "producer", "consumer"):
        raise queries.QueryError("'type' must be all, producer or consumer")
    search = request.query.get("q", "")
    if len(search) > 200:
        raise queries.QueryError("'q' may have at most 200 characters")
    page = _page_request(request, state)
    return await _read(state, lambda session: queries.entities(session, kind, search, page))  # type: ignore[arg-type]


async def _entity(request: web.Request, state: PortalState) -> dict[str, Any] | None:
    registration_id = request.match_info["registrationId"]
    if not 1 <= len(registration_id) <= 128:
        raise queries.QueryError("the registration id has 1 to 128 characters")
    return await _read(state, lambda session: queries.entity(session, registration_id))


async def _prices(request: web.Request, state: PortalState) -> list[dict[str, Any]]:
    limit = _query_int(request, "limit", _PRICE_POINTS, 1, 5_000)
    return await _read(state, lambda session: queries.price_history(session, limit))


async def _settlements(request: web.Request, state: PortalState) -> dict[str, Any]:
    page = _page_request(request, state)
    failed = request.query.get("failed", "") in ("1", "true")
    return await _read(state, lambda session: queries.settlements(session, page, failed))


async def _what_if(request: web.Request, state: PortalState) -> dict[str, Any]:
    """A settled slot replayed under another mechanism (see :mod:`.whatif`)."""
    slot = request.query.get("slot") or "latest"
    mechanism = request.query.get("mechanism") or None
    configured = state.grid.config.market_parameters
    return await _read(state, lambda session: whatif.what_if(session, slot, mechanism, configured))


async def _payments(request: web.Request, state: PortalState) -> dict[str, Any]:
    kind = request.query.get("kind", "payouts")
    if kind not in ("payouts", "incoming"):
        raise queries.QueryError("'kind' must be payouts or incoming")
    page = _page_request(request, state)
    return await _read(state, lambda session: queries.payments(session, kind, page))  # type: ignore[arg-type]


def explorer_base(state: PortalState) -> dict[str, Any]:
    """Where the browser finds the node's explorer.

    A configured URL wins. A node listening on a public name is linked directly. A
    node on loopback or all interfaces is reached on the host the browser already
    uses, at the node's port (the page builds that URL).
    """
    if state.config.explorer_url:
        return {"url": state.config.explorer_url.rstrip("/") + "/", "port": None}
    if state.node_url is None:
        return {"url": None, "port": None}
    parts = urlsplit(state.node_url)
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
        local = address.is_loopback or address.is_unspecified
    except ValueError:
        local = host == "localhost"
    if local:
        return {"url": None, "port": parts.port, "path": "/explorer/"}
    return {"url": f"{state.node_url}/explorer/", "port": None}


async def _node(_request: web.Request, state: PortalState) -> dict[str, Any]:
    healthy, details = await state.grid.health()
    result: dict[str, Any] = {
        "grid": {"healthy": healthy, **details},
        "nodeUrl": state.node_url,
        "explorer": explorer_base(state),
        "node": None,
        "nodeError": None,
    }
    if state.node_url is None or state.http is None:
        result["nodeError"] = "The grid has no node configured."
        return result
    try:
        info = await IriClient(state.http, state.node_url, timeout=5).get_node_info()
    except (IriApiError, NodeUnavailableError) as err:
        result["nodeError"] = str(err)
        return result
    result["node"] = {
        "appName": info.app_name,
        "appVersion": info.app_version,
        "latestMilestoneIndex": info.latest_milestone_index,
        "latestSolidMilestoneIndex": info.latest_solid_milestone_index,
        "latestMilestone": info.latest_milestone,
        "neighbors": info.neighbors,
        "tips": info.tips,
        "coordinatorAddress": info.coordinator_address,
        "synced": info.is_synced,
        "time": info.raw.get("time"),
    }
    return result
