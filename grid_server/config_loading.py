"""Loading a server's configuration: what the node and the grid do alike.

Each server's settings are a frozen dataclass that validates its own fields. The
way there is shared: defaults, then the server's table of a TOML or JSON file,
then environment variables (secrets stay out of files), then command-line flags,
each layer overriding the ones before; one :class:`ConfigError` naming the
setting; one data folder (``$P2P_ENERGY_DATA_DIR``) the servers keep their files in.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

DATA_DIR_ENV: Final = "P2P_ENERGY_DATA_DIR"


class ConfigError(ValueError):
    """A server's configuration is invalid; the message names the setting."""


def default_data_dir() -> Path:
    """Where the servers keep their files: ``$P2P_ENERGY_DATA_DIR``, else ./data."""
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


def read_config_document(path: Path) -> Mapping[str, Any]:
    """The parsed contents of a ``.toml`` or ``.json`` configuration file."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror}") from err
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"configuration file {path} is not valid: {err}") from err
    if not isinstance(data, Mapping):
        raise ConfigError(f"configuration file {path} must hold a table/object")
    return data


def config_section(
    document: Mapping[str, Any], name: str, default: Mapping[str, Any] | None = None
) -> Mapping[str, Any]:
    """The ``[name]`` table of a configuration document; ``default`` (else an empty
    table) when there is none."""
    section = document.get(name, {} if default is None else default)
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] must be a table/object")
    return section


def reject_unknown(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse settings ``where`` does not have (a typo would otherwise be ignored)."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(unknown)}")


def check_seconds(name: str, value: object, low: float, high: float) -> None:
    """A duration setting: a number of seconds from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} seconds")


def load_layers[ConfigT](
    defaults: ConfigT,
    section: Mapping[str, Any] | None,
    from_mapping: Callable[[Mapping[str, Any], ConfigT], ConfigT],
    from_environment: Callable[[ConfigT], ConfigT],
) -> ConfigT:
    """``defaults``, then a file's table for the server (``section``, if there is a
    file), then the environment. Flags, applied by the caller, come last."""
    config = defaults
    if section is not None:
        config = from_mapping(section, config)
    return from_environment(config)
