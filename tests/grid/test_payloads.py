"""Payload models: strict parsing, both price spellings, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from p2p_energy_protocol.errors import PayloadError, ProtocolError
from p2p_energy_protocol.payloads import (
    ConsumerUsage,
    Goodbye,
    Hello,
    PaymentRequest,
    ProducerOutput,
    SourceOutput,
    decode_message_trytes,
    encode_payload,
    has_hello,
    parse_consumer_message,
    parse_grid_message,
    parse_payload,
    parse_producer_message,
    parse_source_message,
    payload_to_json,
    payload_to_trytes,
)
from p2p_energy_protocol.trinary import text_to_trytes

ADDRESS = "A" * 81
PERIOD = {"startTime": 1542267468229, "endTime": 1542267469229}


def test_hello_and_goodbye_on_every_channel() -> None:
    for role in ("source", "producer", "consumer", "grid"):
        assert parse_payload({"command": "hello"}, role) == Hello()  # type: ignore[arg-type]
        assert parse_payload('{"command":"goodbye"}', role) == Goodbye()  # type: ignore[arg-type]
    assert encode_payload(Hello()) == '{"command":"hello"}'
    assert encode_payload(Goodbye()) == '{"command":"goodbye"}'


def test_the_hello_check_parses_each_message() -> None:
    assert has_hello([{"command": "hello"}])
    assert has_hello([None, "garbage", {"command": "output"}, '{"command":"hello"}'])
    assert has_hello([{"command": "hello", "extra": 1}])
    assert not has_hello([])
    assert not has_hello([None, ["hello"], {"command": "HELLO"}, {"command": 5}, "hello"])


def test_source_output_as_the_blueprint_shows() -> None:
    parsed = parse_source_message({"command": "output", **PERIOD, "output": 1.234})
    assert parsed == SourceOutput(1542267468229, 1542267469229, 1.234)
    assert payload_to_json(parsed) == {"command": "output", **PERIOD, "output": 1.234}


def test_producer_price_per_kwh_from_the_blueprint() -> None:
    parsed = parse_producer_message(
        {
            "command": "output",
            **PERIOD,
            "output": 2.0,
            "producerPrice": 56789,
            "paymentIdOrAddress": ADDRESS,
        }
    )
    assert parsed == ProducerOutput(1542267468229, 1542267469229, 2.0, 56789.0, ADDRESS)
    # Emitted with the blueprint's name only.
    assert payload_to_json(parsed) == {
        "command": "output",
        **PERIOD,
        "output": 2.0,
        "producerPrice": 56789.0,
        "paymentIdOrAddress": ADDRESS,
    }


def test_original_price_field_is_a_slot_total() -> None:
    parsed = parse_producer_message(
        {"command": "output", **PERIOD, "output": 4.0, "price": 100, "paymentIdOrAddress": "ref-1"}
    )
    assert isinstance(parsed, ProducerOutput)
    assert parsed.producer_price == 25.0
    zero = parse_producer_message(
        {"command": "output", **PERIOD, "output": 0, "price": 100, "paymentIdOrAddress": "ref-1"}
    )
    assert isinstance(zero, ProducerOutput)
    assert zero.producer_price is None
    with pytest.raises(PayloadError, match="producerPrice"):
        payload_to_json(zero)


def test_producer_price_wins_over_price() -> None:
    parsed = parse_producer_message(
        {
            "command": "output",
            **PERIOD,
            "output": 4.0,
            "price": 100,
            "producerPrice": 7,
            "paymentIdOrAddress": "ref",
        }
    )
    assert isinstance(parsed, ProducerOutput)
    assert parsed.producer_price == 7.0


def test_consumer_bids_are_optional_and_old_usages_unchanged() -> None:
    old = ConsumerUsage(1542267468229, 1542267469229, 1.234)
    # Without a bid the text is the blueprint's, byte for byte.
    assert encode_payload(old) == (
        '{"command":"usage","startTime":1542267468229,"endTime":1542267469229,"usage":1.234}'
    )
    bid = ConsumerUsage(1542267468229, 1542267469229, 1.234, max_price=55.5)
    assert encode_payload(bid).endswith(',"usage":1.234,"maxPrice":55.5}')
    assert parse_consumer_message(encode_payload(bid)) == bid
    # A malformed bid is no bid; the usage is still read.
    for malformed in (-1, "55", True, 1e300, None):
        parsed = parse_consumer_message({**PERIOD, "usage": 1.234, "maxPrice": malformed})
        assert parsed == old
    with pytest.raises(PayloadError, match="maxPrice"):
        ConsumerUsage(1542267468229, 1542267469229, 1.0, max_price=-2)


def test_consumer_usage_with_and_without_command() -> None:
    expected = ConsumerUsage(1542267468229, 1542267469229, 1.234)
    assert parse_consumer_message({**PERIOD, "usage": 1.234}) == expected
    assert parse_consumer_message({"command": "usage", **PERIOD, "usage": 1.234}) == expected
    assert payload_to_json(expected)["command"] == "usage"


def test_payment_request() -> None:
    text = '{"command":"payment-request","owed":345,"usage":1.5,"paymentIdOrAddress":"%s"}'
    text = text.replace("%s", ADDRESS)
    parsed = parse_grid_message(text)
    assert parsed == PaymentRequest(345, 1.5, ADDRESS)
    assert encode_payload(parsed) == text
    assert parsed.amount_due == 345


def test_payment_request_with_pending_payments() -> None:
    """``pending`` is optional: the blueprint's payload has none, and 0 is not sent."""
    request = PaymentRequest(345, 1.5, ADDRESS, pending=100)
    assert payload_to_json(request)["pending"] == 100
    assert parse_grid_message(payload_to_json(request)) == request
    assert request.amount_due == 245
    assert PaymentRequest(50, 0.0, ADDRESS, pending=80).amount_due == 0
    assert "pending" not in payload_to_json(PaymentRequest(345, 1.5, ADDRESS))
    assert parse_grid_message({**payload_to_json(request), "pending": None}).pending == 0


def test_payment_request_with_a_currency_rate() -> None:
    """The rate is optional and additive: old readers ignore it, a bad one is dropped."""
    request = PaymentRequest(345, 1.5, ADDRESS, currency="EUR", currency_per_million_iota="0.25")
    data = payload_to_json(request)
    assert (data["currency"], data["currencyPerMillionIota"]) == ("EUR", "0.25")
    assert parse_grid_message(data) == request
    plain = payload_to_json(PaymentRequest(345, 1.5, ADDRESS))
    assert "currency" not in plain
    assert "currencyPerMillionIota" not in plain
    for bad in (
        {"currency": "eur", "currencyPerMillionIota": "0.25"},
        {"currency": "EUR", "currencyPerMillionIota": "0"},
        {"currency": "EUR", "currencyPerMillionIota": 0.25},
        {"currency": "EUR"},
    ):
        parsed = parse_grid_message({**plain, **bad})
        assert isinstance(parsed, PaymentRequest)
        assert (parsed.owed, parsed.currency, parsed.currency_per_million_iota) == (345, None, None)
    for currency, rate in (("EUR", None), ("euro", "1"), ("EUR", "-1"), ("EUR", "0.0")):
        with pytest.raises(PayloadError):
            PaymentRequest(1, 1.0, ADDRESS, currency=currency, currency_per_million_iota=rate)


@pytest.mark.parametrize(
    ("role", "data", "message"),
    [
        ("source", [], "JSON object"),
        ("source", "not json", "not JSON"),
        ("source", {"command": 5}, "'command' must be a string"),
        ("source", {"command": "usage", **PERIOD, "usage": 1}, "not allowed on a source"),
        ("source", {"output": 1, **PERIOD}, "needs a 'command'"),
        ("source", {"command": "output", **PERIOD}, "'output' is missing"),
        ("source", {"command": "output", **PERIOD, "output": "1"}, "must be a number"),
        ("source", {"command": "output", **PERIOD, "output": True}, "must be a number"),
        ("source", {"command": "output", **PERIOD, "output": -1}, "non-negative"),
        ("source", {"command": "output", **PERIOD, "output": 1e12}, "plausible"),
        ("source", {"command": "output", "startTime": 5, "endTime": 4, "output": 1}, "before"),
        ("source", {"command": "output", "startTime": 1.5, "endTime": 4, "output": 1}, "whole"),
        ("source", {"command": "output", "startTime": -1, "endTime": 4, "output": 1}, "range"),
        ("source", {"command": "output", "startTime": "1", "endTime": 4, "output": 1}, "epoch"),
        (
            "producer",
            {"command": "output", **PERIOD, "output": 1, "paymentIdOrAddress": "x"},
            "producerPrice",
        ),
        (
            "producer",
            {
                "command": "output",
                **PERIOD,
                "output": 1,
                "producerPrice": -2,
                "paymentIdOrAddress": "x",
            },
            "non-negative price",
        ),
        (
            "producer",
            {
                "command": "output",
                **PERIOD,
                "output": 1,
                "producerPrice": 2,
                "paymentIdOrAddress": "",
            },
            "non-empty",
        ),
        (
            "producer",
            {
                "command": "output",
                **PERIOD,
                "output": 1,
                "producerPrice": 2,
                "paymentIdOrAddress": "x" * 300,
            },
            "longer",
        ),
        (
            "producer",
            {
                "command": "output",
                **PERIOD,
                "output": 1,
                "producerPrice": 2,
                "paymentIdOrAddress": "a\nb",
            },
            "control",
        ),
        (
            "producer",
            {
                "command": "output",
                **PERIOD,
                "output": 1,
                "producerPrice": 2,
                "paymentIdOrAddress": 5,
            },
            "must be a string",
        ),
        ("consumer", {"command": "payment-request", "owed": 1}, "not allowed on a consumer"),
        (
            "grid",
            {"command": "payment-request", "owed": 1.5, "usage": 1, "paymentIdOrAddress": "x"},
            "whole number",
        ),
        (
            "grid",
            {"command": "payment-request", "owed": -1, "usage": 1, "paymentIdOrAddress": "x"},
            "between",
        ),
        (
            "grid",
            {
                "command": "payment-request",
                "owed": 1,
                "usage": 1,
                "paymentIdOrAddress": "x",
                "pending": -5,
            },
            "'pending' must be between",
        ),
        (
            "grid",
            {
                "command": "payment-request",
                "owed": 1,
                "usage": 1,
                "paymentIdOrAddress": "x",
                "pending": "5",
            },
            "'pending' must be a number",
        ),
        ("nobody", {"command": "hello"}, "unknown channel role"),
    ],
)
def test_bad_messages_raise_payload_errors(role: Any, data: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_payload(data, role)


def test_non_finite_numbers_are_rejected() -> None:
    with pytest.raises(PayloadError, match="finite"):
        parse_source_message('{"command":"output","startTime":1,"endTime":2,"output":NaN}')
    with pytest.raises(PayloadError, match="finite"):
        ConsumerUsage(1, 2, float("inf"))


def test_payload_errors_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        parse_consumer_message("{}")


def test_trytes_round_trip_escapes_non_ascii() -> None:
    request = PaymentRequest(10, 0.5, "Rechnung-Überweisung")
    trytes = payload_to_trytes(request)
    assert trytes == text_to_trytes(encode_payload(request))
    assert parse_grid_message(decode_message_trytes(trytes)) == request


def test_undecodable_trytes() -> None:
    with pytest.raises(PayloadError, match="not text"):
        decode_message_trytes("ZZ")
    with pytest.raises(PayloadError, match="not text"):
        decode_message_trytes("abc")
    with pytest.raises(PayloadError, match="not JSON"):
        decode_message_trytes(text_to_trytes("{"))


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_consumer_message({**PERIOD, "usage": 2, "meter": "kitchen"})
    assert parsed == ConsumerUsage(PERIOD["startTime"], PERIOD["endTime"], 2.0)


times = st.integers(min_value=0, max_value=10**13)
energies = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(
    times,
    st.integers(min_value=0, max_value=10**9),
    energies,
    energies,
    st.from_regex(r"[A-Z9]{81}", fullmatch=True),
)
def test_producer_round_trip(
    start: int, length: int, output: float, price: float, address: str
) -> None:
    payload = ProducerOutput(start, start + length, output, price, address)
    assert parse_producer_message(json.loads(encode_payload(payload))) == payload
    assert parse_producer_message(decode_message_trytes(payload_to_trytes(payload))) == payload


@given(times, energies)
def test_usage_round_trip(start: int, usage: float) -> None:
    payload = ConsumerUsage(start, start + 900_000, usage)
    assert parse_consumer_message(encode_payload(payload)) == payload
