"""A producer's announced output for coming periods: the optional ``expectedOutput``.

It rides on a producer's output message (:class:`~.payloads.ProducerOutput`) as
``"expectedOutput": {"startTime": ms, "stepMs": ms, "output": [kWh, ...]}``:
``output[i]`` kWh are expected over ``[startTime + i * stepMs, startTime + (i + 1)
* stepMs]``. The grid's price forecast uses it; nothing is billed or paid from it,
so a malformed announcement is dropped rather than the message it rides on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import PayloadError

MAX_EXPECTED_STEPS: Final = 192
"""Values in one announcement (48 hours of 15-minute steps)."""
MIN_STEP_MS: Final = 60_000
MAX_STEP_MS: Final = 86_400_000
# The same bounds as the payloads' (9999-12-31 in Unix ms; kWh per reading).
_MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
_MAX_ENERGY_KWH: Final = 1e9


@dataclass(frozen=True, slots=True)
class ExpectedOutput:
    """``outputs[i]`` kWh expected from ``start_time + i * step_ms`` for ``step_ms``."""

    start_time: int
    step_ms: int
    outputs: tuple[float, ...]

    def __post_init__(self) -> None:
        for name, stamp in (("startTime", self.start_time), ("stepMs", self.step_ms)):
            if isinstance(stamp, bool) or not isinstance(stamp, int):
                raise PayloadError(f"'{name}' must be an integer number of milliseconds")
        if not MIN_STEP_MS <= self.step_ms <= MAX_STEP_MS:
            raise PayloadError(f"'stepMs' must be between {MIN_STEP_MS} and {MAX_STEP_MS}")
        if not 1 <= len(self.outputs) <= MAX_EXPECTED_STEPS:
            raise PayloadError(f"an expected output holds 1 to {MAX_EXPECTED_STEPS} values")
        if not self.start_time >= 0 or self.end_time > _MAX_TIMESTAMP_MS:
            raise PayloadError("'startTime' is out of range")
        for value in self.outputs:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PayloadError("an expected output must be a number of kWh")
            if not math.isfinite(value) or not 0 <= value <= _MAX_ENERGY_KWH:
                raise PayloadError(f"an expected output of {value} kWh is not plausible")

    @property
    def end_time(self) -> int:
        """Where the last announced period ends (Unix ms)."""
        return self.start_time + self.step_ms * len(self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {"startTime": self.start_time, "stepMs": self.step_ms, "output": list(self.outputs)}

    @classmethod
    def from_json(cls, value: object) -> ExpectedOutput:
        """Parse the wire form; raises :class:`PayloadError` when it is not one."""
        if not isinstance(value, Mapping):
            raise PayloadError("'expectedOutput' must be an object")
        start, step, outputs = value.get("startTime"), value.get("stepMs"), value.get("output")
        if isinstance(start, float) and start.is_integer():
            start = int(start)
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(outputs, Sequence) or isinstance(outputs, str):
            raise PayloadError("'expectedOutput.output' must be a list of kWh")
        return cls(start, step, tuple(outputs))  # type: ignore[arg-type]


def optional_expected_output(message: Mapping[str, Any]) -> ExpectedOutput | None:
    """The announcement of a producer's output message; None when absent or malformed."""
    value = message.get("expectedOutput")
    if value is None:
        return None
    try:
        return ExpectedOutput.from_json(value)
    except PayloadError:
        return None
