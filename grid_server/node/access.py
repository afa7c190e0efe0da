"""Who may run which command, and what browsers are told (CORS).

As IRI's ``remote-limit-api``: the admin commands (``admin_commands``) need either
a caller on this machine that is not a web page (a loopback address, no browser
``Origin``, no proxy's forwarding header) or the node's API token
(``Authorization: Bearer <api_token>``). A web page of another origin may read the
Tangle (answers carry ``Access-Control-Allow-Origin: *``) but never change the node:
every other command is refused when the request carries a foreign ``Origin``
(origins listed in ``cors_origins`` are allowed everything but the admin commands
without the token).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Final

from ..config_loading import ConfigError
from .errors import CommandError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiohttp import web

    from .config import NodeConfig

# Commands that only read the Tangle: any web page may use them.
READ_ONLY_COMMANDS: Final = frozenset(
    {
        "getNodeInfo",
        "getTips",
        "findTransactions",
        "getTrytes",
        "getTransactionsToApprove",
        "getBalances",
        "getInclusionStates",
        "wereAddressesSpentFrom",
        "checkConsistency",
        "syncTransactions",
    }
)
_FORWARDING_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_ALLOWED_HEADERS: Final = "Content-Type, X-IOTA-API-Version"
_MAX_AGE: Final = "600"


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class AccessPolicy:
    """Applies ``admin_commands``, ``api_token`` and ``cors_origins`` to requests."""

    def __init__(self, config: NodeConfig, commands: Iterable[str]) -> None:
        known = set(commands)
        unknown = sorted(set(config.admin_commands) - known)
        if unknown:
            raise ConfigError(f"admin_commands names unknown command(s): {', '.join(unknown)}")
        self._admin = frozenset(config.admin_commands)
        self._token = config.api_token
        self._origins = frozenset(config.cors_origins)

    def is_admin(self, command: str) -> bool:
        return command in self._admin

    def check(self, request: web.BaseRequest, command: str) -> None:
        """Raise a 401/403 CommandError unless this caller may run ``command``."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._origins and command not in READ_ONLY_COMMANDS:
            raise CommandError(
                f"{command} changes the node and is refused from a web page of another "
                f"origin ({origin[:100]})",
                status=403,
            )
        if command not in self._admin:
            return
        token = _bearer(request)
        if token is not None:
            if self._token is None or not hmac.compare_digest(token.encode(), self._token.encode()):
                raise CommandError("the API token is not valid", status=401)
            return
        if (
            origin is None
            and is_loopback(request.remote)
            and not any(name in request.headers for name in _FORWARDING_HEADERS)
        ):
            return
        raise CommandError(
            f"{command} is an admin command: call it from this machine (not from a web "
            "page or through a proxy) or with the node's API token "
            "(Authorization: Bearer <api_token>)",
            status=403,
        )

    def cors_headers(self, request: web.BaseRequest, command: str | None) -> dict[str, str]:
        """What a browser may read of this answer."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        if origin in self._origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if command is None or command in READ_ONLY_COMMANDS:
            return {"Access-Control-Allow-Origin": "*"}
        return {}

    def preflight_headers(self, request: web.BaseRequest) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is not None and origin in self._origins:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Headers": f"{_ALLOWED_HEADERS}, Authorization",
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Max-Age": _MAX_AGE,
                "Vary": "Origin",
            }
        # Any page may send reads; the command decides (foreign origins cannot change state).
        return {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Max-Age": _MAX_AGE,
        }


def _bearer(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CommandError("the Authorization header must be 'Bearer <api_token>'", status=401)
    return token.strip()
