"""Property tests of the channel payload models: every valid payload survives
JSON and trytes round trips, and any other JSON raises PayloadError."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import PayloadError
from p2p_energy_protocol.payloads import (
    MAX_ENERGY_KWH,
    MAX_IOTA,
    MAX_PRICE_IOTA_PER_KWH,
    MAX_TIMESTAMP_MS,
    ConsumerUsage,
    Goodbye,
    Hello,
    Payload,
    PaymentRequest,
    ProducerOutput,
    SourceOutput,
    decode_message_trytes,
    encode_payload,
    parse_payload,
    payload_to_json,
    payload_to_trytes,
)

from .profiles import FUZZ
from .strategies import json_values, trytes

CURL_KERNEL_INDEPENDENT = True
"""Nothing here reaches Curl: run once, not once per Curl kernel."""

ROLES = ("source", "producer", "consumer", "grid")
times = st.integers(0, MAX_TIMESTAMP_MS)
energies = st.floats(0, MAX_ENERGY_KWH, allow_nan=False)
prices = st.floats(0, MAX_PRICE_IOTA_PER_KWH, allow_nan=False)
references = st.text(min_size=1, max_size=40).filter(lambda s: s.isprintable() and s.strip() == s)
addresses = st.one_of(trytes(81, 81), trytes(90, 90), references)


@st.composite
def periods(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(times)
    return start, draw(st.integers(start, MAX_TIMESTAMP_MS))


def valid_payloads() -> st.SearchStrategy[tuple[str, Payload]]:
    return st.one_of(
        st.tuples(st.sampled_from(ROLES), st.sampled_from([Hello(), Goodbye()])),
        st.tuples(
            st.just("source"),
            st.builds(lambda p, e: SourceOutput(p[0], p[1], e), periods(), energies),
        ),
        st.tuples(
            st.just("producer"),
            st.builds(
                lambda p, e, price, a: ProducerOutput(p[0], p[1], e, price, a),
                periods(),
                energies,
                prices,
                addresses,
            ),
        ),
        st.tuples(
            st.just("consumer"),
            st.builds(lambda p, e: ConsumerUsage(p[0], p[1], e), periods(), energies),
        ),
        st.tuples(
            st.just("grid"),
            st.builds(
                PaymentRequest,
                st.integers(0, MAX_IOTA),
                energies,
                addresses,
                st.integers(0, MAX_IOTA),
            ),
        ),
    )


@FUZZ
@given(valid_payloads())
def test_valid_payloads_round_trip(role_and_payload: tuple[str, Payload]) -> None:
    role, payload = role_and_payload
    assert parse_payload(payload_to_json(payload), role) == payload  # type: ignore[arg-type]
    assert parse_payload(encode_payload(payload), role) == payload  # type: ignore[arg-type]
    decoded = decode_message_trytes(payload_to_trytes(payload))
    assert parse_payload(decoded, role) == payload  # type: ignore[arg-type]


FIELDS = [
    "command",
    "startTime",
    "endTime",
    "output",
    "usage",
    "owed",
    "pending",
    "price",
    "producerPrice",
    "paymentIdOrAddress",
]
COMMANDS = ["hello", "goodbye", "output", "usage", "payment-request", "HELLO", ""]


def hostile_objects() -> st.SearchStrategy[dict[str, object]]:
    field_values = st.one_of(
        json_values(max_leaves=4),
        st.sampled_from(COMMANDS),
        st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -1.0, 2**64, -(2**64), True]),
        times,
    )
    return st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=9)


@FUZZ
@given(st.sampled_from(ROLES), st.one_of(hostile_objects(), json_values()))
def test_hostile_json_is_a_payload_or_a_payload_error(role: str, value: object) -> None:
    try:
        payload = parse_payload(value, role)  # type: ignore[arg-type]
    except PayloadError:
        return
    # Whatever is accepted is sane and re-parses to itself.
    as_json = payload_to_json(payload) if not _unpublishable(payload) else None
    if as_json is not None:
        assert parse_payload(as_json, role) == payload  # type: ignore[arg-type]
    for name in ("output", "usage", "producer_price"):
        amount = getattr(payload, name, None)
        if amount is not None:
            assert math.isfinite(amount)
            assert amount >= 0
    start, end = getattr(payload, "start_time", 0), getattr(payload, "end_time", 0)
    assert 0 <= start <= end <= MAX_TIMESTAMP_MS


def _unpublishable(payload: Payload) -> bool:
    return isinstance(payload, ProducerOutput) and payload.producer_price is None


@FUZZ
@given(st.sampled_from(ROLES), st.text(max_size=300))
def test_any_text_is_a_payload_or_a_payload_error(role: str, text: str) -> None:
    with contextlib.suppress(PayloadError):
        parse_payload(text, role)  # type: ignore[arg-type]


@FUZZ
@given(trytes(max_size=600))
def test_any_trytes_decode_to_json_or_a_payload_error(value: str) -> None:
    try:
        decoded = decode_message_trytes(value)
    except PayloadError:
        return
    json.dumps(decoded)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_payload_error(depth: int) -> None:
    with pytest.raises(PayloadError):
        parse_payload("[" * depth + "]" * depth, "consumer")
    with pytest.raises(PayloadError):
        parse_payload('{"command":' * depth + "1" + "}" * depth, "consumer")


@FUZZ
@given(st.text(max_size=20).filter(lambda role: role not in ROLES))
def test_unknown_roles_are_rejected(role: str) -> None:
    with pytest.raises(PayloadError):
        parse_payload({"command": "hello"}, role)  # type: ignore[arg-type]
