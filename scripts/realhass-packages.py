"""What scripts/setup-realhass installs besides Home Assistant, and whether an install is current.

Run with the Python of the real-Home-Assistant venv:

    python scripts/realhass-packages.py requirements CONFIGURED...
        the requirements Home Assistant would pip-install itself when it starts with these
        integrations configured: those of the integrations it always sets up and of the
        configured ones, their dependencies and after-dependencies (from their manifests),
        and this project's integration's. Its tests run hass with --skip-pip, as an install
        that has everything it needs; nothing is fetched while they run.
    python scripts/realhass-packages.py check VERSION FRONTEND CONSTRAINTS CONFIGURED...
        exit status 0 when Home Assistant VERSION and home-assistant-frontend FRONTEND are
        installed, every installed package that CONSTRAINTS pins (the test environment's
        ``pip freeze``) has that version, and the requirements above are all installed.
"""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import distributions
from pathlib import Path

INTEGRATION_MANIFEST = Path("custom_components/p2p_energy/manifest.json")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(configured: list[str]) -> list[str]:
    from homeassistant import bootstrap, components

    base = Path(components.__path__[0])
    todo = [
        *configured,
        *bootstrap.CORE_INTEGRATIONS,
        *bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS,
        *bootstrap.FRONTEND_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS,
    ]
    own = json.loads(INTEGRATION_MANIFEST.read_text())
    todo += own.get("dependencies", []) + own.get("after_dependencies", [])
    wanted = set(own.get("requirements", []))
    seen: set[str] = set()
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        path = base / domain / "manifest.json"
        if not path.exists():  # a name that is not (or no longer) a built-in integration
            continue
        manifest = json.loads(path.read_text())
        wanted.update(manifest.get("requirements", []))
        todo += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
    return sorted(wanted)


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in distributions()}


def unsatisfied(wanted: list[str]) -> list[str]:
    """The requirements among ``wanted`` that no installed package satisfies."""
    from packaging.requirements import Requirement

    have = installed()
    missing = []
    for line in wanted:
        requirement = Requirement(line)
        current = have.get(canonical(requirement.name))
        if current is None or not requirement.specifier.contains(current, prereleases=True):
            missing.append(line)
    return missing


def check(version: str, frontend: str, constraints: str, configured: list[str]) -> bool:
    if unsatisfied(requirements(configured)):
        return False
    have = installed()
    pins: dict[str, str] = {}
    for line in Path(constraints).read_text().splitlines():
        name, _, pinned = line.strip().partition("==")
        pins[canonical(name)] = pinned
    pins |= {"homeassistant": version, "home-assistant-frontend": frontend}
    return all(pins.get(name, current) == current for name, current in have.items())


def main() -> int:
    command, *arguments = sys.argv[1:]
    if command == "requirements":
        print("\n".join(requirements(arguments)))
        return 0
    if command == "check":
        version, frontend, constraints, *configured = arguments
        return 0 if check(version, frontend, constraints, configured) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
