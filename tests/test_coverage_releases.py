"""The coverage plugin leaves out exactly the compat branches a release never takes."""

from __future__ import annotations

import re

from tests.coverage_releases import MARKED_SOURCES, false_markers

COMPAT = (MARKED_SOURCES / "compat.py").read_text(encoding="utf-8")


def excluded_lines(release: tuple[int, int]) -> list[str]:
    patterns = false_markers(release)
    return [line for line in COMPAT.splitlines() if any(re.search(p, line) for p in patterns)]


def test_each_release_leaves_out_the_other_side_of_the_threshold() -> None:
    oldest, newest = excluded_lines((2025, 4)), excluded_lines((2026, 10))
    assert oldest
    assert newest
    assert all("ha>=2026.8" in line for line in oldest)
    assert all("ha<2026.8" in line for line in newest)
    # Every marked branch counts under exactly one of the two releases.
    marked = [line for line in COMPAT.splitlines() if re.search(r"#\s*ha(>=|<)\d", line)]
    assert sorted(oldest + newest) == sorted(marked)


def test_the_threshold_itself_belongs_to_the_newer_side() -> None:
    assert all("ha<2026.8" in line for line in excluded_lines((2026, 8)))
    assert all("ha>=2026.8" in line for line in excluded_lines((2026, 7)))
