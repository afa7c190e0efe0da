"""A producer's optional expected output: emitted only when present, parsed leniently."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import PayloadError
from p2p_energy_protocol.expected_output import ExpectedOutput, optional_expected_output
from p2p_energy_protocol.payloads import (
    ProducerOutput,
    encode_payload,
    parse_producer_message,
)

ADDRESS = "A" * 81
OUTPUT = {
    "command": "output",
    "startTime": 1_700_000_000_000,
    "endTime": 1_700_000_900_000,
    "output": 1.5,
    "producerPrice": 30.0,
    "paymentIdOrAddress": ADDRESS,
}
HOUR = 3_600_000


def test_a_message_without_an_announcement_is_unchanged() -> None:
    plain = ProducerOutput(1_700_000_000_000, 1_700_000_900_000, 1.5, 30.0, ADDRESS)
    assert encode_payload(plain) == (
        '{"command":"output","startTime":1700000000000,"endTime":1700000900000,'
        '"output":1.5,"producerPrice":30.0,"paymentIdOrAddress":"' + ADDRESS + '"}'
    )
    assert parse_producer_message(OUTPUT) == plain


def test_an_announcement_round_trips() -> None:
    expected = ExpectedOutput(1_700_000_900_000, HOUR, (0.0, 1.25, 3.5))
    message = ProducerOutput(
        1_700_000_000_000, 1_700_000_900_000, 1.5, 30.0, ADDRESS, expected_output=expected
    )
    text = encode_payload(message)
    assert text.endswith(
        ',"expectedOutput":{"startTime":1700000900000,"stepMs":3600000,"output":[0.0,1.25,3.5]}}'
    )
    assert parse_producer_message(text) == message
    assert expected.end_time == 1_700_000_900_000 + 3 * HOUR


@pytest.mark.parametrize(
    "announcement",
    [
        "soon",
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": "1.0"},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": []},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": [1.0] * 193},
        {"startTime": 1_700_000_900_000, "stepMs": 1_000, "output": [1.0]},
        {"startTime": 1_700_000_900_000, "stepMs": 2 * 86_400_000, "output": [1.0]},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": [-1.0]},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": [float("nan")]},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": [True]},
        {"startTime": 1_700_000_900_000, "stepMs": HOUR, "output": [2e9]},
        {"startTime": -5, "stepMs": HOUR, "output": [1.0]},
        {"startTime": 253_402_300_799_000, "stepMs": HOUR, "output": [1.0]},
        {"startTime": "now", "stepMs": HOUR, "output": [1.0]},
        {"startTime": 1.5, "stepMs": HOUR, "output": [1.0]},
    ],
)
def test_a_malformed_announcement_drops_only_itself(announcement: Any) -> None:
    with pytest.raises(PayloadError):
        ExpectedOutput.from_json(announcement)
    parsed = parse_producer_message({**OUTPUT, "expectedOutput": announcement})
    assert isinstance(parsed, ProducerOutput)
    assert parsed.expected_output is None
    assert parsed.output == 1.5


def test_whole_floats_are_read_as_milliseconds() -> None:
    announcement = {"startTime": 1_700_000_900_000.0, "stepMs": 900_000.0, "output": [1, 2.5]}
    assert optional_expected_output({"expectedOutput": announcement}) == ExpectedOutput(
        1_700_000_900_000, 900_000, (1, 2.5)
    )
    assert optional_expected_output({}) is None


@given(
    start=st.integers(0, 2**42),
    step=st.integers(60_000, 86_400_000),
    outputs=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=192),
)
def test_any_valid_announcement_round_trips(start: int, step: int, outputs: list[float]) -> None:
    expected = ExpectedOutput(start, step, tuple(outputs))
    message = ProducerOutput(start, start, 0.0, 1.0, ADDRESS, expected_output=expected)
    assert parse_producer_message(encode_payload(message)) == message
