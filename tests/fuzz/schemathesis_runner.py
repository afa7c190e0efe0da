"""Runs the schemathesis command line against a live API and reads its verdict.

The command line (rather than the pytest plugin) runs the examples, fuzzing
and stateful phases and prints a summary with the number of generated cases,
which RELIABILITY.md quotes. The coverage phase is left out by default: its
boundary values for the node's 2,673-tryte patterns in 10,000-item arrays take
schemathesis itself minutes of CPU per operation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .profiles import PROFILE

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Examples per operation: a few dozen in CI, thousands per API in the thorough profile.
EXAMPLES = {"ci": 25, "thorough": 1000}
# aiohttp's HTTP parser refuses control characters in header values with a plain-text 400
# before any handler runs; headers are generated from printable ASCII so the checks judge
# the application, not the HTTP parser.
CONFIG = """\
[generation]
codec = "ascii"
exclude-header-characters = "{excluded}"
""".format(excluded="".join(f"\\u{code:04x}" for code in [*range(9), *range(10, 32), 0x7F]))


@dataclass(frozen=True)
class SchemathesisResult:
    returncode: int
    output: str
    generated_cases: int
    seconds: float

    @property
    def summary(self) -> str:
        return f"{self.generated_cases} cases in {self.seconds:.0f} s (exit {self.returncode})"


def run_schemathesis(
    schema_url: str,
    directory: Path,
    *,
    phases: str = "examples,fuzzing,stateful",
    max_examples: int | None = None,
    headers: dict[str, str] | None = None,
    exclude_checks: tuple[str, ...] = ("positive_data_acceptance",),
    seed: int = 20261127,
    timeout: float = 1800,
) -> SchemathesisResult:
    """Run every check (less ``exclude_checks``) and return the verdict.

    ``positive_data_acceptance`` is excluded by default: schema-valid input may still be
    refused for what a schema cannot express (a bundle's hash, a signature), with a 4xx.
    """
    config = directory / "schemathesis.toml"
    config.write_text(CONFIG)
    examples = max_examples or EXAMPLES[PROFILE]
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        schema_url,
        "--checks",
        "all",
        "--phases",
        phases,
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
        "--continue-on-failure",
        "--report",
        "junit",
        "--report-dir",
        str(directory / "schemathesis-report"),
    ]
    if exclude_checks:
        command += ["--exclude-checks", ",".join(exclude_checks)]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}: {value}"]
    started = time.monotonic()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    found = re.search(r"(\d+) generated", output)
    return SchemathesisResult(
        result.returncode, output, int(found.group(1)) if found else 0, seconds
    )


def unexpected_tracebacks(log: str) -> list[str]:
    """Tracebacks in a service log other than aiohttp refusing a malformed HTTP message.

    schemathesis probes servers with a NUL in a header; aiohttp's parser answers 400
    and logs the refusal with a traceback before any application code runs.
    """
    blocks = log.split("Traceback (most recent call last):")[1:]
    return [
        block[:2000] for block in blocks if "aiohttp.http_exceptions.BadHttpMessage" not in block
    ]
