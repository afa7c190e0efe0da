"""A coverage.py plugin: leave out the compat branches the running Home Assistant never takes.

``custom_components/p2p_energy/compat.py`` marks each release-specific branch with
``# ha>=YYYY.M`` or ``# ha<YYYY.M``. Under a given release one side of each threshold
cannot run, so this plugin adds the markers that are false for the installed release to
coverage's exclusions; the other side still counts. Coverage of the integration is then
measured honestly per release (``scripts/test`` runs it under both tested releases).
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

MARKER = re.compile(r"#\s*ha(>=|<)(\d+)\.(\d+)\b")
MARKED_SOURCES = Path(__file__).resolve().parents[1] / "custom_components" / "p2p_energy"


def running_release() -> tuple[int, int]:
    major, minor = version("homeassistant").split(".")[:2]
    return int(major), int(minor)


def false_markers(release: tuple[int, int]) -> set[str]:
    """The markers in the integration's sources whose condition does not hold for ``release``."""
    found: set[str] = set()
    for source in MARKED_SOURCES.rglob("*.py"):
        for operator, major, minor in MARKER.findall(source.read_text(encoding="utf-8")):
            threshold = (int(major), int(minor))
            holds = release >= threshold if operator == ">=" else release < threshold
            if not holds:
                found.add(rf"#\s*ha{re.escape(operator)}{major}\.{minor}\b")
    return found


class ReleaseBranches:
    """Coverage configurer: extends ``report:exclude_lines`` (``exclude_also``)."""

    def configure(self, config: Any) -> None:
        excluded = list(config.get_option("report:exclude_lines"))
        excluded.extend(sorted(false_markers(running_release())))
        config.set_option("report:exclude_lines", excluded)


def coverage_init(reg: Any, options: dict[str, str]) -> None:
    reg.add_configurer(ReleaseBranches())
