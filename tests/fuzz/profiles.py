"""Hypothesis settings for the fuzz suite.

``P2P_FUZZ_PROFILE=ci`` (default) keeps every parser's run to a few hundred
examples so the suite stays fast in CI; ``thorough`` runs thousands per parser
for manual runs and the reliability report. The settings are applied per test
rather than loaded globally so other suites keep their own.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

PROFILE = os.environ.get("P2P_FUZZ_PROFILE", "ci")
FUZZ = settings.get_profile(PROFILE)


def scaled(fraction: float) -> settings:
    """``FUZZ`` with a fraction of its examples, for properties that cost tens of ms each."""
    return settings(FUZZ, max_examples=max(10, int(FUZZ.max_examples * fraction)))
