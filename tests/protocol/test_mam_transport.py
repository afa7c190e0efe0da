"""MAM messages as bundles, and reading payloads back out of whatever sits at an address."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.errors import MamError, ProtocolError
from p2p_energy_protocol.mam import (
    MamMessage,
    create_channel,
    create_message,
    message_to_transactions,
    messages_to_transactions,
    parse_message,
    payload_from_transactions,
)
from p2p_energy_protocol.trinary import TRYTE_ALPHABET

if TYPE_CHECKING:
    from p2p_energy_protocol.transaction import Transaction

SEED = "TRANSPORT" * 9
SIDE_KEY = "TRANSPORTKEY"
TIMESTAMP = 1_700_000_000


def hashed(text: str) -> str:
    """A made-up but well-formed 81-tryte hash."""
    return (text * 81)[:81]


def attach(transactions: list[Transaction], trunk: str = hashed("T")) -> list[Transaction]:
    """Link a bundle as attachToTangle does (no proof of work needed here):
    each transaction's trunk is the next one's hash, the last one's is ``trunk``."""
    linked: list[Transaction] = []
    following = trunk
    for transaction in sorted(transactions, key=lambda t: -t.current_index):
        attached = transaction.replace(trunk_transaction=following, branch_transaction=trunk)
        linked.append(attached)
        following = attached.hash
    return list(reversed(linked))


@pytest.fixture(scope="module")
def messages() -> list[MamMessage]:
    channel = create_channel(SEED, 2, "restricted", SIDE_KEY)
    return [create_message(channel, {"number": number}) for number in range(2)]


def test_bundle_layout(messages: list[MamMessage]) -> None:
    message = messages[0]
    transactions = message_to_transactions(message, tag="MAMTAG", timestamp=TIMESTAMP)
    assert len(transactions) == -(-len(message.payload) // 2187)
    validate_bundle(transactions)
    for index, transaction in enumerate(transactions):
        assert transaction.address == message.address
        assert transaction.value == 0
        assert transaction.current_index == index
        assert transaction.timestamp == TIMESTAMP
        assert transaction.tag.startswith("MAMTAG")
    joined = "".join(t.signature_message_fragment for t in transactions)
    assert joined.rstrip("9") == message.payload.rstrip("9")


def test_many_messages_become_the_bundles_one_at_a_time_would(
    messages: list[MamMessage],
) -> None:
    together = messages_to_transactions(messages, tag="MAMTAG", timestamp=TIMESTAMP)
    alone = [message_to_transactions(m, tag="MAMTAG", timestamp=TIMESTAMP) for m in messages]
    assert together == alone
    assert messages_to_transactions([], timestamp=TIMESTAMP) == []


def test_round_trip_through_attached_transactions(messages: list[MamMessage]) -> None:
    message = messages[1]
    transactions = attach(message_to_transactions(message, timestamp=TIMESTAMP))
    shuffled = transactions[:]
    random.Random(3).shuffle(shuffled)
    (payload,) = payload_from_transactions(shuffled)
    assert parse_message(payload, message.root, SIDE_KEY).data == {"number": 1}


def test_unattached_bundle_is_read_by_index(messages: list[MamMessage]) -> None:
    message = messages[0]
    transactions = message_to_transactions(message, timestamp=TIMESTAMP)
    (payload,) = payload_from_transactions(reversed(transactions))
    assert parse_message(payload, message.root, SIDE_KEY).data == {"number": 0}


def test_spam_never_blocks_the_channel(messages: list[MamMessage]) -> None:
    good, other = messages
    genuine = attach(message_to_transactions(good, timestamp=TIMESTAMP))
    reattached = attach(message_to_transactions(good, timestamp=TIMESTAMP), trunk=hashed("R"))
    # Another valid message (wrong root for this reader) at the same address.
    foreign = attach(message_to_transactions(other, timestamp=TIMESTAMP))
    foreign = [t.replace(address=good.address) for t in foreign]
    # A single transaction of garbage, an incomplete bundle and a broken chain.
    rng = random.Random(5)
    garbage = genuine[0].replace(
        signature_message_fragment="".join(rng.choice(TRYTE_ALPHABET) for _ in range(2187)),
        bundle=hashed("G"),
        current_index=0,
        last_index=0,
    )
    incomplete = attach(message_to_transactions(other, timestamp=TIMESTAMP + 1))[:-1]
    broken = attach(message_to_transactions(other, timestamp=TIMESTAMP + 2))
    broken[1] = broken[1].replace(trunk_transaction=hashed("X"))
    found = [garbage, *foreign, *incomplete, *broken, *genuine, *reattached]
    random.Random(6).shuffle(found)

    payloads = payload_from_transactions(found)
    assert len(payloads) == 3  # garbage, the foreign message and ours (reattachment merged)
    readable = []
    for payload in payloads:
        try:
            readable.append(parse_message(payload, good.root, SIDE_KEY))
        except MamError:
            continue
    assert [parsed.data for parsed in readable] == [{"number": 0}]


def test_inconsistent_bundles_are_skipped(messages: list[MamMessage]) -> None:
    transactions = attach(message_to_transactions(messages[0], timestamp=TIMESTAMP))
    wrong_last = [transactions[0], transactions[1].replace(last_index=5), transactions[2]]
    assert payload_from_transactions(wrong_last) == []
    duplicate_index = message_to_transactions(messages[0], timestamp=TIMESTAMP)
    twice = [*duplicate_index, duplicate_index[1].replace(tag=hashed("D")[:27])]
    assert payload_from_transactions(twice) == []
    assert payload_from_transactions([]) == []


def test_only_transactions_are_accepted() -> None:
    with pytest.raises(ProtocolError):
        payload_from_transactions(["9" * 2673])  # type: ignore[list-item]


def test_bad_tag_is_refused(messages: list[MamMessage]) -> None:
    with pytest.raises(ProtocolError):
        message_to_transactions(messages[0], tag="lowercase")
