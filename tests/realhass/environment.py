"""Which real Home Assistant these tests run: the release of the test environment itself.

``scripts/setup-realhass`` installs that release with the ``home-assistant-frontend`` it
pins into ``$P2P_REALHASS_DIR/<version>/`` (by default ``.realhass/`` in the repository; the
test venv ``.venv`` has Home Assistant 2025.4.4, and the root of ``scripts/ha-current``, which
sets the variable to its own ``/opt/realhass``, the newest release). Outside CI a missing
install skips the tests with the command that makes it; in CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from homeassistant import const as ha_const

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = REPO / "custom_components" / "p2p_energy"
STAMP = ".p2p-realhass-stamp"


@dataclass(frozen=True)
class RealHass:
    """An installed Home Assistant release with its frontend."""

    version: str
    prefix: Path

    @property
    def python(self) -> Path:
        """Its interpreter (``python -m homeassistant`` runs it: the venv may have moved)."""
        return self.prefix / "bin" / "python"

    @property
    def frontend_version(self) -> str:
        (site_packages,) = (self.prefix / "lib").glob("python3*/site-packages")
        (metadata,) = site_packages.glob("home_assistant_frontend-*.dist-info")
        return metadata.name.removeprefix("home_assistant_frontend-").removesuffix(".dist-info")


def missing(reason: str) -> None:
    """Skip outside CI; in CI a missing environment is an error."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must set it up: scripts/setup-realhass)", pytrace=False)
    pytest.skip(f"{reason}; run scripts/setup-realhass to set it up")


def real_hass() -> RealHass:
    """The real Home Assistant of this test environment's release, or skip (fail in CI)."""
    prefix = Path(os.environ.get("P2P_REALHASS_DIR", REPO / ".realhass")) / ha_const.__version__
    if not (prefix / "bin" / "python").exists() or not (prefix / STAMP).exists():
        missing(f"no real Home Assistant {ha_const.__version__} with its frontend in {prefix}")
    return RealHass(ha_const.__version__, prefix)
