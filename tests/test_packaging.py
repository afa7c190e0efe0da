"""The built wheel must carry every package and data file the grid server needs.

The protocol library is mapped from inside the integration, so setuptools cannot
discover packages by itself; this test catches a package or asset left out of
pyproject.toml before an add-on image or a pip install ships without it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "custom_components" / "p2p_energy" / "protocol"


def _expected_files() -> set[str]:
    expected: set[str] = set()
    for source, name in ((PROTOCOL, "p2p_energy_protocol"), (ROOT / "grid_server", "grid_server")):
        for path in source.rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            expected.add(f"{name}/{path.relative_to(source).as_posix()}")
    return expected


@pytest.mark.slow
def test_wheel_contains_every_module_and_asset(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if not name.startswith("p2p_energy_grid-")}
    missing = sorted(_expected_files() - shipped)
    assert not missing, f"files left out of the wheel: {missing}"


def test_every_package_is_listed_in_pyproject() -> None:
    """A quick check of the package list alone (the wheel test is slow): every folder
    with an ``__init__.py`` under the protocol library and the grid server is listed,
    including the household engine's subpackage of the protocol library."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found: set[str] = set()
    for source, name in ((PROTOCOL, "p2p_energy_protocol"), (ROOT / "grid_server", "grid_server")):
        for init in source.rglob("__init__.py"):
            parts = init.parent.relative_to(source).parts
            found.add(".".join((name, *parts)))
    assert found == listed
    assert (PROTOCOL / "household" / "__init__.py").is_file()
