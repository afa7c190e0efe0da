"""The release path: the GitHub workflows (checked by actionlint), the versions a tag
releases, and the add-on image, built from this repository's own source.

Docker cannot run here, so the image is checked as far as it can be without it: the
Dockerfile at lint level (a pinned base image, nothing downloaded, the labels the
Supervisor reads), the build context (what Dockerfile.dockerignore keeps holds everything
the Dockerfile copies) and what it installs (a wheel built from exactly those files).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
WORKFLOWS = REPOSITORY / ".github" / "workflows"
ADDON = REPOSITORY / "addon" / "p2p_energy_grid"
DOCKERFILE = (ADDON / "Dockerfile").read_text(encoding="utf-8")
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key "on" as True.
    document["on"] = document.pop(True)
    return document


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if str(step.get("uses", "")).startswith(action)]


def run_commands(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


# --- actionlint ---------------------------------------------------------------------------


def actionlint(folder: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on every workflow of the folder's .github/workflows."""
    if not ACTIONLINT.exists():
        pytest.fail("actionlint is missing: scripts/setup installs it (requirements_test.txt)")
    files = sorted(str(path) for path in (folder / ".github" / "workflows").glob("*.y*ml"))
    assert files
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *files],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_workflows_pass_actionlint() -> None:
    result = actionlint(REPOSITORY)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "broken.yml").write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n",
        encoding="utf-8",
    )
    result = actionlint(tmp_path)
    assert result.returncode == 1
    assert "no_such_thing" in result.stdout


# --- what the workflows do ----------------------------------------------------------------


def test_pull_requests_run_both_releases_hassfest_and_hacs() -> None:
    tests = workflow("tests.yml")
    assert {"pull_request", "workflow_call"} <= set(tests["on"])
    jobs = tests["jobs"]

    suite = jobs["suite"]
    assert steps_using(suite, "actions/setup-python")[0]["with"]["python-version"] == "3.13"
    assert "scripts/test" in run_commands(suite)

    newest = jobs["integration-newest"]
    assert steps_using(newest, "actions/setup-python")[0]["with"]["python-version"] == "3.14"
    commands = run_commands(newest)
    assert "requirements_ha_current.txt" in commands
    assert "pytest tests/components" in commands
    assert "scripts/coverage-per-module" in commands

    assert steps_using(jobs["hassfest"], "home-assistant/actions/hassfest")
    (hacs,) = steps_using(jobs["hacs"], "hacs/action")
    assert hacs["with"]["category"] == "integration"
    assert steps_using(jobs["addon"], "frenck/action-addon-linter")
    (build,) = steps_using(jobs["addon"], "docker/build-push-action")
    assert build["with"]["push"] is False
    assert build["with"]["file"] == "addon/p2p_energy_grid/Dockerfile"
    assert "actionlint" in run_commands(jobs["actionlint"])


def test_the_pinned_releases_are_the_ones_the_workflow_names() -> None:
    """The job titles name the releases the requirement files pin."""
    jobs = workflow("tests.yml")["jobs"]
    oldest = re.search(
        r"^homeassistant==(\S+)$",
        (REPOSITORY / "requirements_test.txt").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert oldest is not None
    assert oldest.group(1) in jobs["suite"]["name"]
    current = (REPOSITORY / "requirements_ha_current.txt").read_text(encoding="utf-8")
    assert "pytest-homeassistant-custom-component==0.13.375" in current
    assert "2026.10.4" in jobs["integration-newest"]["name"]


def test_a_tag_publishes_the_packages_and_the_addon_image() -> None:
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["tests"]["uses"] == "./.github/workflows/tests.yml"
    assert "scripts/release-versions --expect" in run_commands(jobs["version"])

    assert "python -m build" in run_commands(jobs["python-package"])
    assert "tests" in jobs["python-package"]["needs"]
    pypi = jobs["pypi"]
    # Trusted publishing: an OIDC token for the environment, no stored password.
    assert pypi["permissions"] == {"id-token": "write"}
    assert pypi["environment"]["name"] == "pypi"
    (publish,) = steps_using(pypi, "pypa/gh-action-pypi-publish")
    assert "password" not in publish.get("with", {})

    image = jobs["addon-image"]
    assert image["permissions"]["packages"] == "write"
    config = yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))
    arches = {entry["arch"] for entry in image["strategy"]["matrix"]["include"]}
    assert arches == set(config["arch"])
    (build,) = steps_using(image, "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["context"] == "."
    assert build["with"]["file"] == "addon/p2p_energy_grid/Dockerfile"
    # The pushed name is the one the Supervisor pulls (owner and arch filled in).
    owner = config["image"].split("/")[1]
    pushed = {
        line.strip()
        .replace("${{ github.repository_owner }}", owner)
        .replace("${{ matrix.arch }}", "{arch}")
        .rsplit(":", 1)[0]
        for line in build["with"]["tags"].splitlines()
        if line.strip()
    }
    assert pushed == {config["image"]}
    assert "gh release create" in run_commands(jobs["github-release"])


# --- the versions a tag releases ----------------------------------------------------------

RELEASE_VERSIONS = REPOSITORY / "scripts" / "release-versions"


def release_versions(*args: str, root: Path = REPOSITORY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RELEASE_VERSIONS), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_repository_states_one_version_with_a_changelog_entry() -> None:
    version = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert release_versions("--expect", version).returncode == 0
    entry = release_versions("--changelog", version)
    assert entry.returncode == 0
    assert entry.stdout.strip()
    assert release_versions("--expect", "99.0.0").returncode == 1


def test_a_version_out_of_step_stops_the_release(tmp_path: Path) -> None:
    for relative in (
        "pyproject.toml",
        "custom_components/p2p_energy/manifest.json",
        "addon/p2p_energy_grid/config.yaml",
        "addon/p2p_energy_grid/CHANGELOG.md",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPOSITORY / relative, tmp_path / relative)
    manifest_path = tmp_path / "custom_components/p2p_energy/manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["version"] = "9.9.9"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    result = release_versions(root=tmp_path)
    assert result.returncode == 1
    assert "the versions differ" in result.stderr


# --- the add-on image ---------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def copies() -> list[tuple[list[str], str]]:
    found = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            *sources, target = arguments.split()
            found.append((sources, target))
    return found


def context_keeps(relative: str, patterns: list[str]) -> bool:
    """Whether a path is in the build context under these .dockerignore patterns (the
    subset of Docker's rules the file uses: last match wins, a folder covers its contents)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    kept = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            kept = negated
    return kept


def build_context(into: Path) -> Path:
    """Copy the files Docker would send as the context (repository root, ignore file)."""
    ignore = (ADDON / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for relative in tracked:
        if context_keeps(relative, patterns) and (REPOSITORY / relative).is_file():
            (into / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / relative, into / relative)
    return into


def test_dockerfile_builds_from_the_checkout_on_a_pinned_base() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    # The base image is an ARG with a pinned default (the Supervisor's current convention
    # in place of build.yaml), and FROM uses it.
    assert instructions[0][0] == "ARG"
    default = re.fullmatch(r"BUILD_FROM=(\S+):(\S+)", instructions[0][1])
    assert default is not None
    assert default.group(1) == "ghcr.io/home-assistant/base-python"
    assert re.fullmatch(r"3\.13-alpine3\.\d+", default.group(2))
    assert ("FROM", "${BUILD_FROM}") in instructions
    assert not (ADDON / "build.yaml").exists()
    # Nothing is fetched from anywhere but the package index: no ADD, no URL in a RUN.
    assert "ADD" not in keywords
    for keyword, arguments in instructions:
        if keyword == "RUN":
            assert not re.search(r"https?://|\bcurl\b|\bwget\b", arguments), arguments
    install = next(a for k, a in instructions if k == "RUN" and "pip install" in a)
    assert '"/usr/src/p2p-energy-grid[postgresql]"' in install
    assert ("COPY", "addon/p2p_energy_grid/rootfs /") in instructions
    labels = " ".join(a for k, a in instructions if k == "LABEL")
    for label in ("io.hass.name", "io.hass.version", "io.hass.arch", 'io.hass.type="addon"'):
        assert label in labels


def test_the_build_context_holds_everything_the_dockerfile_copies(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    for sources, _target in copies():
        for source in sources:
            assert (context / source).exists(), f"{source} is not in the build context"
    # Nothing else of size: no virtual environments, roots or test data.
    sent = {path.relative_to(context).parts[0] for path in context.rglob("*") if path.is_file()}
    assert sent == {
        "pyproject.toml",
        "README.md",
        "custom_components",
        "grid_server",
        "native",
        "addon",
    }
    # The services the image makes executable are in what it copies.
    for keyword, arguments in dockerfile_instructions():
        if keyword == "RUN" and arguments.startswith("chmod"):
            for target in arguments.split()[2:]:
                rootfs = context / "addon/p2p_energy_grid/rootfs"
                assert list(rootfs.glob(target.lstrip("/"))), target


def test_the_image_installs_the_grid_server_from_those_files(tmp_path: Path) -> None:
    """Replays the Dockerfile's COPY steps into a folder and builds the wheel its pip
    install would install, from nothing but those files."""
    context = build_context(tmp_path / "context")
    image = tmp_path / "image"
    for sources, target in copies():
        if not target.startswith("/usr/src/p2p-energy-grid"):
            continue
        destination = image / target.lstrip("/")
        for source in sources:
            origin = context / source
            if origin.is_dir():
                shutil.copytree(origin, destination, dirs_exist_ok=True)
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination / origin.name)
    project = image / "usr/src/p2p-energy-grid"
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(project),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("p2p_energy_grid-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "p2p-energy = grid_server.cli:main" in archive.read(entry_points).decode()
    for expected in (
        "grid_server/cli.py",
        "grid_server/addon_config.py",
        "grid_server/portal/pages/index.html",
        "grid_server/grid/migrations/script.py.mako",
        "p2p_energy_protocol/mam/__init__.py",
        "p2p_energy_protocol/py.typed",
    ):
        assert expected in names, expected
    # The compiled Curl kernel is built from the copied native/ source (a compiler is here).
    assert any(name.startswith("p2p_energy_curl.") for name in names), sorted(names)[:5]
