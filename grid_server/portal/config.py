"""Portal settings: the ``[portal]`` table of the grid's configuration file and the environment.

The operator password is only ever held hashed: a file carries ``password_hash``
(made by ``p2p-energy portal-password`` or the add-on), while a plain
``P2P_ENERGY_PORTAL_PASSWORD`` from the environment is hashed when it is read.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

from .auth import PasswordError, hash_password, validate_password_hash

if TYPE_CHECKING:
    from pathlib import Path

ENV_PREFIX: Final = "P2P_ENERGY_PORTAL_"
# The Supervisor's ingress gateway on the Home Assistant add-on network.
SUPERVISOR_INGRESS_ADDRESS: Final = "172.30.32.2"
SESSION_SECRET_FILE: Final = "portal-session-secret"


class PortalConfigError(ValueError):
    """The portal configuration is invalid; the message names the setting."""


@dataclass(frozen=True)
class PortalConfig:
    """How the portal authenticates operators and where it links to."""

    enabled: bool = True
    # None: only Home Assistant ingress can open the portal.
    password_hash: str | None = None
    # Requests carrying X-Ingress-Path are trusted only from these peer addresses.
    trusted_ingress_addresses: tuple[str, ...] = (SUPERVISOR_INGRESS_ADDRESS,)
    # Loopback and wildcard addresses would make every local process (or anyone) the
    # operator; they are refused unless this is set, and then logged as a warning.
    allow_unsafe_ingress_addresses: bool = False
    # None: a random secret kept in the data folder (sessions survive restarts).
    session_secret: str | None = None
    session_max_age: int = 12 * 3600
    # Base URL of the node's explorer as the operator's browser reaches it; None: the
    # node's own URL, or this host on the node's port when the node listens locally.
    explorer_url: str | None = None
    max_page_size: int = 100
    # Sign-in attempts the whole grid allows per window from browsers that have not
    # signed in before (each address also waits longer after every failure).
    login_budget: int = 20
    login_budget_window: int = 600

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PortalConfigError("portal.enabled must be true or false")
        if self.password_hash is not None:
            try:
                validate_password_hash(self.password_hash)
            except PasswordError as err:
                raise PortalConfigError(f"portal.{err}") from err
        if not isinstance(self.allow_unsafe_ingress_addresses, bool):
            raise PortalConfigError("portal.allow_unsafe_ingress_addresses must be true or false")
        for address in self.trusted_ingress_addresses:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError as err:
                raise PortalConfigError(
                    f"portal.trusted_ingress_addresses: {address!r} is not an IP address"
                ) from err
            if unsafe_ingress_address(parsed) and not self.allow_unsafe_ingress_addresses:
                raise PortalConfigError(
                    f"portal.trusted_ingress_addresses: {address} is a loopback or wildcard "
                    "address, so every program on this machine (or anyone) would be the "
                    "operator; use the ingress gateway's own address, or set "
                    "portal.allow_unsafe_ingress_addresses = true to accept it anyway"
                )
        if self.session_secret is not None and len(self.session_secret) < 32:
            raise PortalConfigError("portal.session_secret needs at least 32 characters")
        if not 60 <= self.session_max_age <= 30 * 86_400:
            raise PortalConfigError("portal.session_max_age must be 60 seconds to 30 days")
        if self.explorer_url is not None and not self.explorer_url.startswith(
            ("http://", "https://")
        ):
            raise PortalConfigError("portal.explorer_url must start with http:// or https://")
        if not 10 <= self.max_page_size <= 1000:
            raise PortalConfigError("portal.max_page_size must be between 10 and 1000")
        if not 1 <= self.login_budget <= 10_000:
            raise PortalConfigError("portal.login_budget must be between 1 and 10000")
        if not 10 <= self.login_budget_window <= 86_400:
            raise PortalConfigError("portal.login_budget_window must be 10 seconds to a day")

    @property
    def unsafe_ingress_addresses(self) -> tuple[str, ...]:
        """The trusted ingress addresses that are loopback or wildcard (forced)."""
        return tuple(
            address
            for address in self.trusted_ingress_addresses
            if unsafe_ingress_address(ipaddress.ip_address(address))
        )

    def session_secret_bytes(self, data_dir: Path) -> bytes:
        """The configured secret, else the one kept in ``data_dir`` (created on first use)."""
        if self.session_secret is not None:
            return self.session_secret.encode("utf-8")
        return ensure_secret_file(data_dir / SESSION_SECRET_FILE)


def unsafe_ingress_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback or unspecified (0.0.0.0, ::), also written as IPv4-mapped IPv6."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def ensure_secret_file(path: Path) -> bytes:
    """Read a random 32-byte secret from ``path``, creating it (mode 0600) when missing."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secret)
        return secret
    if len(secret) < 32:
        raise PortalConfigError(f"{path} holds fewer than 32 bytes; delete it to make a new one")
    return secret


_FIELDS: Final = {item.name for item in fields(PortalConfig)}
_UNSAFE: Final = "allow_unsafe_ingress_addresses"


def _addresses(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise PortalConfigError("portal.trusted_ingress_addresses must be a list of IP addresses")


def portal_config_from_mapping(
    data: Mapping[str, Any], base: PortalConfig | None = None
) -> PortalConfig:
    """Apply a ``[portal]`` table on top of ``base``."""
    unknown = sorted(set(data) - _FIELDS - {"password"})
    if unknown:
        raise PortalConfigError(f"unknown portal setting(s): {', '.join(unknown)}")
    if "password" in data:
        raise PortalConfigError(
            "portal.password must not be stored in a file: put password_hash there "
            "(p2p-energy portal-password prints one) or set P2P_ENERGY_PORTAL_PASSWORD"
        )
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name == "trusted_ingress_addresses":
            changes[name] = _addresses(value)
        elif name in ("session_max_age", "max_page_size", "login_budget", "login_budget_window"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise PortalConfigError(f"portal.{name} must be an integer")
            changes[name] = value
        elif name in ("enabled", "allow_unsafe_ingress_addresses"):
            changes[name] = value
        else:
            if value is not None and not isinstance(value, str):
                raise PortalConfigError(f"portal.{name} must be a string")
            changes[name] = value or None
    return replace(base if base is not None else PortalConfig(), **changes)


def apply_portal_environment(
    config: PortalConfig, environ: Mapping[str, str] | None = None
) -> PortalConfig:
    """``P2P_ENERGY_PORTAL_PASSWORD`` (hashed here), ``..._PASSWORD_HASH``,
    ``..._TRUSTED_INGRESS`` (comma separated), ``..._ALLOW_UNSAFE_INGRESS``,
    ``..._EXPLORER_URL``, ``..._ENABLED``."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    if env.get(ENV_PREFIX + "PASSWORD"):
        try:
            changes["password_hash"] = hash_password(env[ENV_PREFIX + "PASSWORD"])
        except PasswordError as err:
            raise PortalConfigError(f"{ENV_PREFIX}PASSWORD: {err}") from err
    elif env.get(ENV_PREFIX + "PASSWORD_HASH"):
        changes["password_hash"] = env[ENV_PREFIX + "PASSWORD_HASH"].strip()
    if ENV_PREFIX + "TRUSTED_INGRESS" in env:
        changes["trusted_ingress_addresses"] = _addresses(env[ENV_PREFIX + "TRUSTED_INGRESS"])
    if env.get(ENV_PREFIX + "EXPLORER_URL"):
        changes["explorer_url"] = env[ENV_PREFIX + "EXPLORER_URL"].strip()
    for variable, name in (("ENABLED", "enabled"), ("ALLOW_UNSAFE_INGRESS", _UNSAFE)):
        if ENV_PREFIX + variable in env:
            flag = env[ENV_PREFIX + variable].strip().lower()
            if flag not in ("0", "1", "true", "false", "yes", "no"):
                raise PortalConfigError(f"{ENV_PREFIX}{variable} must be true or false")
            changes[name] = flag in ("1", "true", "yes")
    return replace(config, **changes) if changes else config


def load_portal_config(
    document: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> PortalConfig:
    """Defaults, then the document's ``portal`` table, then the environment."""
    config = PortalConfig()
    if document is not None:
        section = document.get("portal", {})
        if not isinstance(section, Mapping):
            raise PortalConfigError("[portal] must be a table/object")
        config = portal_config_from_mapping(section, config)
    return apply_portal_environment(config, environ)
