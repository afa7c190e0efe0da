"""The engine and the simulators run where Home Assistant is not installed.

A child interpreter refuses every ``homeassistant`` and ``custom_components``
import, imports every module of the protocol library (with the household engine)
and of the simulator, and runs a household through a period on the in-memory
network the engine's tests use. Anything that reaches for Home Assistant fails
there with an ImportError.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    FORBIDDEN = ("homeassistant", "custom_components")


    class NoHomeAssistant(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"{name} imported by the engine")
            return None


    sys.meta_path.insert(0, NoHomeAssistant())
    imported = 0
    for package_name in ("p2p_energy_protocol", "grid_server.simulator"):
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, package_name + "."):
            importlib.import_module(module.name)
            imported += 1

    from tests.engine.households import Home, config


    async def one_period():
        home = Home()
        await home.open(config("source", "pv"), config("producer", "inv", sources=("source-pv",)))
        await home.period(1, source_pv=1.0, producer_inv=2.0)
        await home.period(2, source_pv=1.5, producer_inv=2.25)
        return [body["output"] for body in home.bodies("producer-inv") if "output" in body]


    outputs = asyncio.run(one_period())
    assert outputs == [0.75], outputs
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in FORBIDDEN)
    assert not loaded, loaded
    print(imported)
    """
)


def test_engine_and_simulator_import_and_run_without_home_assistant() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Every module of the protocol library, the engine and the simulator was imported.
    assert int(result.stdout.strip()) >= 40


def test_no_engine_module_names_home_assistant() -> None:
    """The static half: no import of Home Assistant anywhere in the protocol library
    or the simulator, even one behind TYPE_CHECKING or inside a function."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("custom_components/p2p_energy/protocol", "grid_server/simulator")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if any(
            line.lstrip().startswith(("import homeassistant", "from homeassistant"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
