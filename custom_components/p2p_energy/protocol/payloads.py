"""Typed models of the JSON messages carried on the project's MAM channels.

Every channel carries ``hello`` first and ``goodbye`` last; in between:

* a source's channel: :class:`SourceOutput` (kWh over a period),
* a producer's channel: :class:`ProducerOutput` (kWh, asking price, payment address,
  optionally its expected output for coming periods, :mod:`.expected_output`),
* a consumer's channel: :class:`ConsumerUsage` (kWh over a period),
* the grid's return channel to a consumer: :class:`PaymentRequest`.

Parsing is strict about the fields a message needs (types, ranges, units) and
ignores unknown fields so newer publishers stay readable. Times are Unix epoch
milliseconds (the blueprint says "since 1900" but every implementation used the
Unix epoch).

What is accepted and what is emitted where the blueprint and the original code
differ:

* Producer price: ``producerPrice`` is IOTA per kWh (blueprint). The original
  code sent ``price`` holding the slot's total price instead; a ``price`` is read
  as that total and converted to IOTA per kWh by dividing by ``output``. When both
  are present ``producerPrice`` wins. Only ``producerPrice`` is emitted.
* Consumer usage: accepted with or without ``"command": "usage"`` (the blueprint
  omits it); emitted with it, as the original code did. An optional ``maxPrice``
  (IOTA per kWh) is the consumer's bid for the period's local energy; it is emitted
  only when set, so a usage without a bid is byte for byte the blueprint's, and a
  malformed one is read as no bid (the usage itself is never lost over it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .errors import InvalidAsciiError, InvalidTrytesError, PayloadError
from .expected_output import ExpectedOutput, optional_expected_output
from .trinary import text_to_trytes, trytes_to_ascii

# Largest accepted timestamp: 9999-12-31T23:59:59.999Z in Unix milliseconds.
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
MAX_PAYMENT_ID_LENGTH: Final = 256
# Energies and prices above these are not readings but corrupt data.
MAX_ENERGY_KWH: Final = 1e9
MAX_PRICE_IOTA_PER_KWH: Final = 1e15
MAX_IOTA: Final = 2_779_530_283_277_761

HELLO_SEARCH_DEPTH: Final = 5
"""Messages of a channel searched for its hello before a registration is refused."""

PayloadRole = Literal["source", "producer", "consumer", "grid"]
_CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")
_DECIMAL_RATE: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,18})?")


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of every channel; proves a reader found the right channel."""

    command: Literal["hello"] = "hello"


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Last message of a channel that is no longer used."""

    command: Literal["goodbye"] = "goodbye"


@dataclass(frozen=True, slots=True)
class SourceOutput:
    """Energy a source delivered to its producer over ``[start_time, end_time]``."""

    start_time: int
    end_time: int
    output: float
    """kWh."""

    def __post_init__(self) -> None:
        _check_period(self.start_time, self.end_time)
        _check_energy("output", self.output)


@dataclass(frozen=True, slots=True)
class ProducerOutput:
    """A producer's aggregated output for a period, its asking price and where to pay."""

    start_time: int
    end_time: int
    output: float
    """kWh."""
    producer_price: float | None
    """Asking price in IOTA per kWh; ``None`` only when an original-style ``price``
    total came with zero output, so no per-kWh price can be derived."""
    payment_id_or_address: str
    """An IOTA address (81 or 90 trytes) or a reference for another way of paying."""
    expected_output: ExpectedOutput | None = None
    """Announced output of coming periods (optional, emitted only when present)."""

    def __post_init__(self) -> None:
        _check_period(self.start_time, self.end_time)
        _check_energy("output", self.output)
        if self.producer_price is not None:
            _check_price("producerPrice", self.producer_price)
        _check_payment_id(self.payment_id_or_address)


@dataclass(frozen=True, slots=True)
class ConsumerUsage:
    """Energy a consumer used over ``[start_time, end_time]``."""

    start_time: int
    end_time: int
    usage: float
    """kWh."""
    max_price: float | None = None
    """The most the consumer pays per kWh of local energy (IOTA per kWh; None: no bid)."""

    def __post_init__(self) -> None:
        _check_period(self.start_time, self.end_time)
        _check_energy("usage", self.usage)
        if self.max_price is not None:
            _check_price("maxPrice", self.max_price)


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """The grid's bill on a consumer's return channel."""

    owed: int
    """IOTA owed: everything billed minus the payments the ledger has confirmed."""
    usage: float
    """kWh this request is for."""
    payment_id_or_address: str
    pending: int = 0
    """IOTA of payments seen on the Tangle but not confirmed yet (an optional field,
    absent from the blueprint's payload). They do not lower ``owed``: a payment that
    never confirms never paid anything."""
    currency: str | None = None
    """ISO 4217 code of the grid's fixed rate (optional; absent without a rate)."""
    currency_per_million_iota: str | None = None
    """What 1,000,000 IOTA are worth in ``currency``, as exact decimal text (optional)."""

    def __post_init__(self) -> None:
        _check_iota("owed", self.owed)
        _check_iota("pending", self.pending)
        _check_currency_rate(self.currency, self.currency_per_million_iota)
        _check_energy("usage", self.usage)
        _check_payment_id(self.payment_id_or_address)

    @property
    def amount_due(self) -> int:
        """IOTA still to send: what is owed minus what is already on its way."""
        return max(0, self.owed - self.pending)


Payload = Hello | Goodbye | SourceOutput | ProducerOutput | ConsumerUsage | PaymentRequest
SourceMessage = Hello | Goodbye | SourceOutput
ProducerMessage = Hello | Goodbye | ProducerOutput
ConsumerMessage = Hello | Goodbye | ConsumerUsage
GridMessage = Hello | Goodbye | PaymentRequest


def payload_to_json(payload: Payload) -> dict[str, Any]:
    """The JSON object to publish for ``payload`` (field names as documented above)."""
    match payload:
        case Hello() | Goodbye():
            return {"command": payload.command}
        case SourceOutput():
            return {
                "command": "output",
                "startTime": payload.start_time,
                "endTime": payload.end_time,
                "output": payload.output,
            }
        case ProducerOutput():
            if payload.producer_price is None:
                raise PayloadError("a producer output needs a producerPrice to be published")
            output: dict[str, Any] = {
                "command": "output",
                "startTime": payload.start_time,
                "endTime": payload.end_time,
                "output": payload.output,
                "producerPrice": payload.producer_price,
                "paymentIdOrAddress": payload.payment_id_or_address,
            }
            if payload.expected_output is not None:
                output["expectedOutput"] = payload.expected_output.to_json()
            return output
        case ConsumerUsage():
            usage: dict[str, Any] = {
                "command": "usage",
                "startTime": payload.start_time,
                "endTime": payload.end_time,
                "usage": payload.usage,
            }
            if payload.max_price is not None:
                usage["maxPrice"] = payload.max_price
            return usage
        case PaymentRequest():
            request: dict[str, Any] = {
                "command": "payment-request",
                "owed": payload.owed,
                "usage": payload.usage,
                "paymentIdOrAddress": payload.payment_id_or_address,
            }
            if payload.pending:
                request["pending"] = payload.pending
            if payload.currency is not None:
                request["currency"] = payload.currency
                request["currencyPerMillionIota"] = payload.currency_per_million_iota
            return request
    raise PayloadError(f"not a payload: {type(payload).__name__}")


def encode_payload(payload: Payload) -> str:
    """Compact JSON text of ``payload``, as the MAM publishers send it."""
    return json.dumps(payload_to_json(payload), separators=(",", ":"))


def payload_to_trytes(payload: Payload) -> str:
    """``payload`` as MAM message trytes (compact JSON, non-ASCII escaped)."""
    return text_to_trytes(encode_payload(payload))


def decode_message_trytes(trytes: str) -> Any:
    """The JSON value encoded in MAM message trytes."""
    try:
        text = trytes_to_ascii(trytes)
    except (InvalidTrytesError, InvalidAsciiError) as err:
        raise PayloadError(f"message is not text: {err}") from err
    return _loads(text)


def parse_payload(data: Mapping[str, Any] | str, role: PayloadRole) -> Payload:
    """Parse a message read from a channel of an entity with ``role``.

    ``data`` is the decoded JSON object or its text. The role decides what an
    ``output`` command means (a source's or a producer's) and which commands are
    allowed at all.
    """
    parsers = {
        "source": parse_source_message,
        "producer": parse_producer_message,
        "consumer": parse_consumer_message,
        "grid": parse_grid_message,
    }
    if role not in parsers:
        raise PayloadError(f"unknown channel role {role!r}")
    return parsers[role](data)


def parse_source_message(data: Mapping[str, Any] | str) -> SourceMessage:
    """Parse a message of a source's output channel."""
    obj, command = _command(data)
    if command == "output":
        return SourceOutput(
            start_time=_timestamp(obj, "startTime"),
            end_time=_timestamp(obj, "endTime"),
            output=_number(obj, "output"),
        )
    return _hello_or_goodbye(command, "source")


def parse_producer_message(data: Mapping[str, Any] | str) -> ProducerMessage:
    """Parse a message of a producer's output channel."""
    obj, command = _command(data)
    if command == "output":
        return _parse_producer_output(obj)
    return _hello_or_goodbye(command, "producer")


def parse_consumer_message(data: Mapping[str, Any] | str) -> ConsumerMessage:
    """Parse a message of a consumer's usage channel (``command`` may be absent)."""
    obj, command = _command(data)
    if command in ("usage", None):
        return ConsumerUsage(
            start_time=_timestamp(obj, "startTime"),
            end_time=_timestamp(obj, "endTime"),
            usage=_number(obj, "usage"),
            max_price=optional_price(obj.get("maxPrice")),
        )
    return _hello_or_goodbye(command, "consumer")


def parse_grid_message(data: Mapping[str, Any] | str) -> GridMessage:
    """Parse a message of the grid's return channel to a consumer."""
    obj, command = _command(data)
    if command == "payment-request":
        currency, rate = _optional_currency_rate(obj)
        return PaymentRequest(
            owed=_integer(obj, "owed"),
            usage=_number(obj, "usage"),
            payment_id_or_address=_string(obj, "paymentIdOrAddress"),
            pending=_integer(obj, "pending") if obj.get("pending") is not None else 0,
            currency=currency,
            currency_per_million_iota=rate,
        )
    return _hello_or_goodbye(command, "grid")


def optional_price(value: Any) -> float | None:
    """An optional price (IOTA per kWh) such as a bid; anything but a plausible one is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    price = float(value)
    if not math.isfinite(price) or not 0 <= price <= MAX_PRICE_IOTA_PER_KWH:
        return None
    return price


def has_hello(messages: Iterable[Any]) -> bool:
    """Whether one of a channel's first messages (decoded JSON values) is its hello.

    The one hello check of every registration (the grid's, a producer's): a
    message is parsed as any message is, so ``{"command": "hello", ...}`` counts
    and anything that is not a JSON object does not.
    """
    for data in messages:
        try:
            _obj, command = _command(data)
        except PayloadError:
            continue
        if command == "hello":
            return True
    return False


def _command(data: Mapping[str, Any] | str) -> tuple[Mapping[str, Any], str | None]:
    obj = _as_object(data)
    command = obj.get("command")
    if command is not None and not isinstance(command, str):
        raise PayloadError("'command' must be a string")
    return obj, command


def _hello_or_goodbye(command: str | None, role: PayloadRole) -> Hello | Goodbye:
    if command == "hello":
        return Hello()
    if command == "goodbye":
        return Goodbye()
    if command is None:
        raise PayloadError(f"a {role} message needs a 'command'")
    raise PayloadError(f"command {command!r} is not allowed on a {role} channel")


def _parse_producer_output(obj: Mapping[str, Any]) -> ProducerOutput:
    output = _number(obj, "output")
    if obj.get("producerPrice") is not None:
        price: float | None = _number(obj, "producerPrice")
    elif obj.get("price") is not None:
        # The original code sent the slot's total price as 'price'.
        total = _number(obj, "price")
        price = total / output if output > 0 else None
    else:
        raise PayloadError("a producer output needs 'producerPrice' (IOTA per kWh) or 'price'")
    return ProducerOutput(
        start_time=_timestamp(obj, "startTime"),
        end_time=_timestamp(obj, "endTime"),
        output=output,
        producer_price=price,
        payment_id_or_address=_string(obj, "paymentIdOrAddress"),
        expected_output=optional_expected_output(obj),
    )


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise PayloadError(f"message is not JSON: {err}") from err


def _as_object(data: Mapping[str, Any] | str) -> Mapping[str, Any]:
    value = _loads(data) if isinstance(data, str) else data
    if not isinstance(value, Mapping):
        raise PayloadError(f"a message must be a JSON object, got {type(value).__name__}")
    return value


def _field(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise PayloadError(f"'{name}' is missing")
    return obj[name]


def _number(obj: Mapping[str, Any], name: str) -> float:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"'{name}' must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise PayloadError(f"'{name}' must be finite")
    return result


def _integer(obj: Mapping[str, Any], name: str) -> int:
    value = _number(obj, name)
    if not value.is_integer():
        raise PayloadError(f"'{name}' must be a whole number, got {value}")
    return int(value)


def _timestamp(obj: Mapping[str, Any], name: str) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"'{name}' must be milliseconds since the Unix epoch")
    if isinstance(value, float) and not value.is_integer():
        raise PayloadError(f"'{name}' must be a whole number of milliseconds, got {value}")
    stamp = int(value)
    if not 0 <= stamp <= MAX_TIMESTAMP_MS:
        raise PayloadError(f"'{name}' is out of range: {stamp}")
    return stamp


def _string(obj: Mapping[str, Any], name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise PayloadError(f"'{name}' must be a string, got {type(value).__name__}")
    return value


def _check_period(start_time: int, end_time: int) -> None:
    for name, value in (("startTime", start_time), ("endTime", end_time)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadError(f"'{name}' must be an integer number of milliseconds")
        if not 0 <= value <= MAX_TIMESTAMP_MS:
            raise PayloadError(f"'{name}' is out of range: {value}")
    if end_time < start_time:
        raise PayloadError(f"'endTime' {end_time} is before 'startTime' {start_time}")


def _check_energy(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"'{name}' must be a number of kWh")
    if not math.isfinite(value) or value < 0:
        raise PayloadError(f"'{name}' must be a finite, non-negative number of kWh, got {value}")
    if value > MAX_ENERGY_KWH:
        raise PayloadError(f"'{name}' of {value} kWh is not a plausible reading")


def _check_iota(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"'{name}' must be an integer amount of IOTA")
    if not 0 <= value <= MAX_IOTA:
        raise PayloadError(f"'{name}' must be between 0 and {MAX_IOTA} IOTA, got {value}")


def _check_price(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"'{name}' must be a number of IOTA per kWh")
    if not math.isfinite(value) or value < 0:
        raise PayloadError(f"'{name}' must be a finite, non-negative price, got {value}")
    if value > MAX_PRICE_IOTA_PER_KWH:
        raise PayloadError(f"'{name}' of {value} IOTA per kWh is not a plausible price")


def _currency_rate_problem(currency: str | None, rate: str | None) -> str | None:
    """Why an optional currency and rate pair is not valid (None: it is)."""
    if (currency is None) != (rate is None):
        return "'currency' and 'currencyPerMillionIota' come together"
    if currency is not None and not _CURRENCY_CODE.fullmatch(currency):
        return f"'currency' must be an ISO 4217 code such as EUR, got {currency!r}"
    if rate is not None and (not _DECIMAL_RATE.fullmatch(rate) or not rate.strip("0.")):
        return f"'currencyPerMillionIota' must be a positive decimal, got {rate!r}"
    return None


def _check_currency_rate(currency: str | None, rate: str | None) -> None:
    problem = _currency_rate_problem(currency, rate)
    if problem is not None:
        raise PayloadError(problem)


def _optional_currency_rate(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The optional rate of a grid message; a malformed one is ignored, not the message."""
    currency, rate = obj.get("currency"), obj.get("currencyPerMillionIota")
    if not isinstance(currency, str) or not isinstance(rate, str):
        return None, None
    if _currency_rate_problem(currency, rate) is not None:
        return None, None
    return currency, rate


def _check_payment_id(value: str) -> None:
    if not isinstance(value, str):
        raise PayloadError("'paymentIdOrAddress' must be a string")
    stripped = value.strip()
    if not stripped or stripped != value:
        raise PayloadError("'paymentIdOrAddress' must be non-empty without surrounding spaces")
    if len(value) > MAX_PAYMENT_ID_LENGTH:
        raise PayloadError(f"'paymentIdOrAddress' is longer than {MAX_PAYMENT_ID_LENGTH}")
    if not value.isprintable():
        raise PayloadError("'paymentIdOrAddress' holds control characters")
