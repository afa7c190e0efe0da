"""Run protocol tests against both Curl kernels: the compiled one and numpy.

A conftest imports ``curl_kernel`` and ``pytest_generate_tests`` from here; every
test in its folder then runs once per kernel, except in modules that set
``CURL_KERNEL_INDEPENDENT = True`` (they never reach Curl). The compiled kernel is
part of the project's set-up, so a missing one fails its tests instead of hiding
behind a skip; set ``P2P_ENERGY_CURL_KERNEL=numpy`` on a machine without a C
compiler to skip them on purpose.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol import kernel

from custom_components.p2p_energy.protocol import kernel as integration_kernel

if TYPE_CHECKING:
    from collections.abc import Iterator


def require_compiled() -> None:
    """Fail (or skip, where P2P_ENERGY_CURL_KERNEL=numpy says so) without the compiled kernel."""
    if kernel.available():
        return
    if os.environ.get(kernel.ENVIRONMENT_VARIABLE, "").strip().lower() == "numpy":
        pytest.skip("compiled Curl kernel skipped (P2P_ENERGY_CURL_KERNEL=numpy)")
    pytest.fail(
        "the compiled Curl kernel p2p_energy_curl is not installed: run scripts/setup "
        "(it needs a C compiler and Python's headers), or set P2P_ENERGY_CURL_KERNEL=numpy"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "curl_kernel" in metafunc.fixturenames and not getattr(
        metafunc.module, "CURL_KERNEL_INDEPENDENT", False
    ):
        metafunc.parametrize("curl_kernel", kernel.KERNEL_NAMES, indirect=True)


@pytest.fixture(autouse=True)
def curl_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    name = getattr(request, "param", None)
    if name is None:  # a module that does not depend on the kernel
        yield kernel.active()
        return
    if name == "native":
        require_compiled()
    # The grid's name for the library and the integration's are two module objects.
    with ExitStack() as stack:
        stack.enter_context(kernel.using(name))
        stack.enter_context(integration_kernel.using(name))
        yield name
