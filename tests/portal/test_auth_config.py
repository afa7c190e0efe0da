"""Password hashing, session tokens and the portal's configuration."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from grid_server.portal.auth import (
    PasswordError,
    hash_password,
    validate_password_hash,
    verify_password,
)
from grid_server.portal.config import (
    PortalConfig,
    PortalConfigError,
    ensure_secret_file,
    load_portal_config,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_password_hash_round_trip(password_hash: str) -> None:
    assert password_hash.startswith("scrypt$16384$8$1$")
    assert verify_password("operator-passphrase", password_hash)
    assert not verify_password("operator-passphrasE", password_hash)
    assert not verify_password("", password_hash)
    assert not verify_password("x" * 5000, password_hash)
    # A fresh salt every time.
    assert hash_password("operator-passphrase") != password_hash


@pytest.mark.parametrize("password", ["short", "x" * 1025])
def test_weak_or_huge_passwords_are_refused(password: str) -> None:
    with pytest.raises(PasswordError):
        hash_password(password)


@pytest.mark.parametrize(
    "encoded",
    [
        "plain-text",
        "scrypt$16384$8$1$c2FsdA==",
        "scrypt$1000$8$1$c2FsdA==$a2V5",  # N not a power of two
        "scrypt$16384$99$1$c2FsdA==$a2V5",
        "bcrypt$16384$8$1$c2FsdA==$a2V5",
    ],
)
def test_malformed_hashes_are_refused(encoded: str) -> None:
    with pytest.raises(PasswordError):
        validate_password_hash(encoded)
    with pytest.raises(PasswordError):
        verify_password("anything-at-all", encoded)


def test_config_from_file_and_environment(password_hash: str) -> None:
    document = {
        "portal": {
            "password_hash": password_hash,
            "trusted_ingress_addresses": ["172.30.32.2", "fd00::2"],
            "session_max_age": 3600,
            "login_budget": 50,
            "explorer_url": "https://explorer.example/",
        }
    }
    config = load_portal_config(document, environ={})
    assert config == PortalConfig(
        password_hash=password_hash,
        trusted_ingress_addresses=("172.30.32.2", "fd00::2"),
        session_max_age=3600,
        login_budget=50,
        explorer_url="https://explorer.example/",
    )
    from_env = load_portal_config(
        None,
        environ={
            "P2P_ENERGY_PORTAL_PASSWORD": "from-the-environment",
            "P2P_ENERGY_PORTAL_TRUSTED_INGRESS": "10.0.0.1, 10.0.0.2",
            "P2P_ENERGY_PORTAL_ENABLED": "no",
        },
    )
    assert from_env.password_hash is not None
    assert verify_password("from-the-environment", from_env.password_hash)
    assert from_env.trusted_ingress_addresses == ("10.0.0.1", "10.0.0.2")
    assert from_env.enabled is False
    hashed = load_portal_config(None, environ={"P2P_ENERGY_PORTAL_PASSWORD_HASH": password_hash})
    assert hashed.password_hash == password_hash


@pytest.mark.parametrize(
    ("document", "environ", "message"),
    [
        ({"portal": {"password": "plain"}}, {}, "must not be stored in a file"),
        ({"portal": {"colour": "green"}}, {}, "unknown portal setting"),
        ({"portal": []}, {}, "must be a table"),
        ({"portal": {"password_hash": "nope"}}, {}, "password_hash must look like"),
        ({"portal": {"trusted_ingress_addresses": ["supervisor"]}}, {}, "not an IP address"),
        ({"portal": {"trusted_ingress_addresses": 5}}, {}, "list of IP addresses"),
        ({"portal": {"session_max_age": 10}}, {}, "session_max_age"),
        ({"portal": {"session_max_age": "10"}}, {}, "must be an integer"),
        ({"portal": {"session_secret": "short"}}, {}, "at least 32 characters"),
        ({"portal": {"explorer_url": "ftp://x"}}, {}, "explorer_url must start"),
        ({"portal": {"enabled": "yes"}}, {}, "enabled must be true or false"),
        ({"portal": {"max_page_size": 5}}, {}, "max_page_size"),
        ({"portal": {"login_budget": 0}}, {}, "login_budget must be"),
        ({"portal": {"login_budget_window": 1}}, {}, "login_budget_window must be"),
        ({"portal": {"allow_unsafe_ingress_addresses": "yes"}}, {}, "must be true or false"),
        (None, {"P2P_ENERGY_PORTAL_ALLOW_UNSAFE_INGRESS": "?"}, "INGRESS must be true or"),
        (None, {"P2P_ENERGY_PORTAL_PASSWORD": "short"}, "P2P_ENERGY_PORTAL_PASSWORD"),
        (None, {"P2P_ENERGY_PORTAL_ENABLED": "maybe"}, "ENABLED must be true or false"),
    ],
)
def test_bad_configuration_is_named(
    document: dict[str, object] | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(PortalConfigError, match=message):
        load_portal_config(document, environ=environ)


def test_session_secret_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret"
    secret = ensure_secret_file(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secret_file(path) == secret
    assert PortalConfig().session_secret_bytes(tmp_path / "sub") != secret  # other file name
    assert PortalConfig(session_secret="s" * 32).session_secret_bytes(tmp_path) == b"s" * 32
    path.write_bytes(b"tiny")
    with pytest.raises(PortalConfigError, match="fewer than 32 bytes"):
        ensure_secret_file(path)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"]
)
def test_loopback_and_wildcard_ingress_addresses_need_forcing(address: str) -> None:
    """Every local program (or anyone) would be the operator: refused unless forced."""
    with pytest.raises(PortalConfigError, match="allow_unsafe_ingress_addresses = true"):
        load_portal_config({"portal": {"trusted_ingress_addresses": [address]}}, environ={})
    with pytest.raises(PortalConfigError, match="loopback or wildcard"):
        load_portal_config(None, environ={"P2P_ENERGY_PORTAL_TRUSTED_INGRESS": address})
    forced = load_portal_config(
        {
            "portal": {
                "trusted_ingress_addresses": [address, "172.30.32.2"],
                "allow_unsafe_ingress_addresses": True,
            }
        },
        environ={},
    )
    assert forced.unsafe_ingress_addresses == (address,)
    from_env = load_portal_config(
        None,
        environ={
            "P2P_ENERGY_PORTAL_TRUSTED_INGRESS": address,
            "P2P_ENERGY_PORTAL_ALLOW_UNSAFE_INGRESS": "true",
        },
    )
    assert from_env.trusted_ingress_addresses == (address,)
    assert PortalConfig().unsafe_ingress_addresses == ()
