"""Every test here runs with the compiled Curl kernel and with numpy (tests/curl_kernels.py)."""

from __future__ import annotations

from tests.curl_kernels import curl_kernel, pytest_generate_tests

__all__ = ["curl_kernel", "pytest_generate_tests"]
