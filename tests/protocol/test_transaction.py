"""Transaction layout, parsing, hashing and strict validation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from p2p_energy_protocol.curl import curl_hash
from p2p_energy_protocol.errors import InvalidTransactionError
from p2p_energy_protocol.transaction import (
    LANE_CHUNK,
    MAX_INT_FIELD,
    MAX_VALUE,
    TRANSACTION_LENGTH,
    Transaction,
    transactions_from_trytes,
    transactions_hashes,
)
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, int_to_trytes, trits_to_trytes


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def random_transaction(rng: random.Random) -> Transaction:
    last_index = rng.randrange(0, 8)
    return Transaction(
        signature_message_fragment=random_trytes(rng, 2187),
        address=random_trytes(rng, 81),
        value=rng.randrange(-MAX_VALUE, MAX_VALUE + 1),
        obsolete_tag=random_trytes(rng, 27),
        timestamp=rng.randrange(0, 2**32),
        current_index=rng.randrange(0, last_index + 1),
        last_index=last_index,
        bundle=random_trytes(rng, 81),
        trunk_transaction=random_trytes(rng, 81),
        branch_transaction=random_trytes(rng, 81),
        tag=random_trytes(rng, 27),
        attachment_timestamp=rng.randrange(0, MAX_INT_FIELD + 1),
        attachment_timestamp_lower_bound=rng.randrange(0, 1000),
        attachment_timestamp_upper_bound=MAX_INT_FIELD,
        nonce=random_trytes(rng, 27),
    )


def test_layout_places_every_field_where_the_protocol_says() -> None:
    transaction = random_transaction(random.Random(1))
    trytes = transaction.to_trytes()
    assert len(trytes) == TRANSACTION_LENGTH
    assert trytes[0:2187] == transaction.signature_message_fragment
    assert trytes[2187:2268] == transaction.address
    assert trytes[2268:2295] == int_to_trytes(transaction.value, 27)
    assert trytes[2295:2322] == transaction.obsolete_tag
    assert trytes[2322:2331] == int_to_trytes(transaction.timestamp, 9)
    assert trytes[2331:2340] == int_to_trytes(transaction.current_index, 9)
    assert trytes[2340:2349] == int_to_trytes(transaction.last_index, 9)
    assert trytes[2349:2430] == transaction.bundle
    assert trytes[2430:2511] == transaction.trunk_transaction
    assert trytes[2511:2592] == transaction.branch_transaction
    assert trytes[2592:2619] == transaction.tag
    assert trytes[2619:2628] == int_to_trytes(transaction.attachment_timestamp, 9)
    assert trytes[2628:2637] == int_to_trytes(transaction.attachment_timestamp_lower_bound, 9)
    assert trytes[2637:2646] == int_to_trytes(transaction.attachment_timestamp_upper_bound, 9)
    assert trytes[2646:2673] == transaction.nonce


def test_trytes_round_trip() -> None:
    rng = random.Random(2)
    for _ in range(20):
        transaction = random_transaction(rng)
        parsed = Transaction.from_trytes(transaction.to_trytes())
        assert parsed == transaction
        assert parsed.to_trytes() == transaction.to_trytes()


def test_all_nines_is_the_empty_transaction() -> None:
    transaction = Transaction.from_trytes("9" * TRANSACTION_LENGTH)
    assert transaction.value == 0
    assert transaction.timestamp == 0
    assert transaction.is_tail
    assert transaction.bundle == "9" * 81


def test_hash_is_curl_p_81_of_all_trits_and_is_cached() -> None:
    transaction = random_transaction(random.Random(3))
    expected = trits_to_trytes(curl_hash(transaction.to_trits()))
    assert transaction.hash == expected
    assert transaction.hash is transaction.hash
    changed = transaction.replace(nonce="A" * 27)
    assert changed.hash != expected
    assert changed.hash == trits_to_trytes(curl_hash(changed.to_trits()))


def test_essence_is_address_to_last_index() -> None:
    transaction = random_transaction(random.Random(4))
    essence = transaction.essence_trits()
    assert essence.shape == (486,)
    assert np.array_equal(essence, transaction.to_trits()[6561 : 6561 + 486])


def test_many_hashes_equal_single_hashes() -> None:
    rng = random.Random(5)
    transactions = [random_transaction(rng) for _ in range(70)]  # more than one 64-lane word
    trytes = [t.to_trytes() for t in transactions]
    hashes = transactions_hashes(trytes)
    assert hashes == [Transaction.from_trytes(t).hash for t in trytes]
    parsed = transactions_from_trytes(trytes)
    assert [t.hash for t in parsed] == hashes
    assert parsed == transactions
    assert transactions_hashes([]) == []
    for count in (1, 5, 6):  # a few hash one by one, from six on as lanes
        assert transactions_hashes(trytes[:count]) == hashes[:count]


def test_parsed_transactions_keep_their_trytes_and_essence() -> None:
    rng = random.Random(12)
    transactions = [random_transaction(rng) for _ in range(4)]
    trytes = [t.to_trytes() for t in transactions]
    for parsed, original in zip(transactions_from_trytes(trytes), trytes, strict=True):
        assert parsed.to_trytes() is original
        assert parsed.essence_trytes() == original[2187:2349]
        changed = parsed.replace(timestamp=parsed.timestamp + 1)
        assert changed.to_trytes() != original
        assert changed.to_trytes()[2322:2331] == int_to_trytes(parsed.timestamp + 1, 9)


def test_transactions_from_trytes_names_the_bad_transaction() -> None:
    good = base_trytes()
    value_field = "9" * 11 + "A" + "9" * 15  # trit 33 set
    with pytest.raises(InvalidTransactionError, match="transaction 2: the value field"):
        transactions_from_trytes([good, good, good[:2268] + value_field + good[2295:]])
    out_of_order = good[:2331] + int_to_trytes(5, 9) + int_to_trytes(4, 9) + good[2349:]
    with pytest.raises(InvalidTransactionError, match="transaction 1: current_index 5"):
        transactions_from_trytes([good, out_of_order])
    with pytest.raises(InvalidTransactionError, match="transaction 1 is not a string"):
        transactions_from_trytes([good, good[:-1]])
    with pytest.raises(InvalidTransactionError, match="one string"):
        transactions_from_trytes(good)
    assert transactions_from_trytes([]) == []


def test_many_transactions_are_read_in_chunks_with_positions_of_the_whole_list() -> None:
    rng = random.Random(14)
    distinct = [random_transaction(rng) for _ in range(7)]
    count = LANE_CHUNK + 3  # past the first chunk
    trytes = [distinct[n % 7].to_trytes() for n in range(count)]
    parsed = transactions_from_trytes(trytes)
    assert [t.hash for t in parsed] == [distinct[n % 7].hash for n in range(count)]
    assert parsed == [distinct[n % 7] for n in range(count)]
    assert transactions_hashes(trytes) == [t.hash for t in parsed]
    value_field = "9" * 11 + "A" + "9" * 15  # trit 33 set
    bad = trytes[-1][:2268] + value_field + trytes[-1][2295:]
    with pytest.raises(InvalidTransactionError, match=f"transaction {count - 1}: the value"):
        transactions_from_trytes([*trytes[:-1], bad])
    with pytest.raises(InvalidTransactionError, match=f"transaction {count - 1} is not"):
        transactions_hashes([*trytes[:-1], bad[:-1]])
    with pytest.raises(InvalidTransactionError, match=f"transaction {count - 2} contains"):
        transactions_from_trytes([*trytes[:-2], "a" + bad[1:], trytes[-1]])


def test_hashes_a_node_told_are_taken_and_the_fields_decoded_alike() -> None:
    rng = random.Random(15)
    transactions = [random_transaction(rng) for _ in range(LANE_CHUNK + 5)]
    trytes = [t.to_trytes() for t in transactions]
    told = ["A" * 81 if n == 3 else t.hash for n, t in enumerate(transactions)]
    parsed = transactions_from_trytes(trytes, told)
    assert parsed == transactions  # every field, integers included
    assert [t.hash for t in parsed] == told  # not recomputed: the caller vouches
    assert all(p.to_trytes() is t for p, t in zip(parsed, trytes, strict=True))
    with pytest.raises(InvalidTransactionError, match="2 hashes given for 3"):
        transactions_from_trytes(trytes[:3], told[:2])
    # The same checks and messages as without hashes.
    value_field = "9" * 11 + "A" + "9" * 15  # trit 33 set
    last = len(trytes) - 1
    bad_value = trytes[-1][:2268] + value_field + trytes[-1][2295:]
    out_of_order = trytes[0][:2331] + int_to_trytes(5, 9) + int_to_trytes(4, 9) + trytes[0][2349:]
    for broken, message in (
        ([*trytes[:-1], bad_value], f"transaction {last}: the value field"),
        ([*trytes[:-1], "a" + trytes[-1][1:]], f"transaction {last} contains 'a'"),
        ([*trytes[:-1], trytes[-1][:-1]], f"transaction {last} is not a string"),
        ([*trytes[:-1], out_of_order], f"transaction {last}: current_index 5"),
    ):
        for hashes in (None, told):
            with pytest.raises(InvalidTransactionError, match=message):
                transactions_from_trytes(broken, hashes)


def test_integer_fields_out_of_range_are_refused_when_many_are_read() -> None:
    rng = random.Random(16)
    transactions = [random_transaction(rng) for _ in range(8)]
    trytes = [t.to_trytes() for t in transactions]
    parsed = transactions_from_trytes(trytes)
    assert parsed == transactions
    for fast, built in zip(parsed, transactions, strict=True):
        assert vars(fast) == vars(built) | {"_hash": fast._hash, "_trytes": fast._trytes}
    negative = trytes[5][:2322] + int_to_trytes(-5, 9) + trytes[5][2331:]
    with pytest.raises(
        InvalidTransactionError, match=r"transaction 5: timestamp must lie in 0\.\."
    ):
        transactions_from_trytes([*trytes[:5], negative, *trytes[6:]])
    late = trytes[2][:2637] + int_to_trytes(-1, 9) + trytes[2][2646:]
    with pytest.raises(InvalidTransactionError, match="attachment_timestamp_upper_bound must"):
        transactions_from_trytes([*trytes[:2], late], [t.hash for t in transactions[:3]])
    with pytest.raises(InvalidTransactionError, match=r"^timestamp must lie"):
        Transaction.from_trytes(negative)


def test_is_tail_and_index_consistency() -> None:
    transaction = random_transaction(random.Random(6)).replace(current_index=0, last_index=2)
    assert transaction.is_tail
    assert not transaction.replace(current_index=1).is_tail
    with pytest.raises(InvalidTransactionError, match="above last_index"):
        transaction.replace(current_index=3)


def base_trytes() -> str:
    return random_transaction(random.Random(7)).to_trytes()


@pytest.mark.parametrize("length", [0, 2672, 2674])
def test_from_trytes_rejects_wrong_lengths(length: int) -> None:
    with pytest.raises(InvalidTransactionError, match="2673 trytes"):
        Transaction.from_trytes("9" * length)


def test_from_trytes_rejects_bad_characters_and_types() -> None:
    trytes = base_trytes()
    with pytest.raises(InvalidTransactionError, match="only 9 and A-Z"):
        Transaction.from_trytes(trytes[:100] + "a" + trytes[101:])
    with pytest.raises(InvalidTransactionError, match="must be a string"):
        Transaction.from_trytes(b"9" * TRANSACTION_LENGTH)  # type: ignore[arg-type]


def test_from_trytes_rejects_value_trits_beyond_33() -> None:
    trytes = base_trytes()
    value_field = "9" * 11 + "A" + "9" * 15  # trit 33 set
    with pytest.raises(InvalidTransactionError, match="first 33 trits"):
        Transaction.from_trytes(trytes[:2268] + value_field + trytes[2295:])


def test_from_trytes_rejects_indexes_out_of_order_and_negative_fields() -> None:
    trytes = base_trytes()
    with pytest.raises(InvalidTransactionError, match="above last_index"):
        Transaction.from_trytes(
            trytes[:2331] + int_to_trytes(5, 9) + int_to_trytes(4, 9) + trytes[2349:]
        )
    with pytest.raises(InvalidTransactionError, match="timestamp must lie"):
        Transaction.from_trytes(trytes[:2322] + int_to_trytes(-1, 9) + trytes[2331:])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"value": MAX_VALUE + 1}, "total supply"),
        ({"value": -MAX_VALUE - 1}, "total supply"),
        ({"value": True}, "must be an int"),
        ({"timestamp": 1.5}, "must be an int"),
        ({"current_index": -1}, "must lie in"),
        ({"attachment_timestamp": MAX_INT_FIELD + 1}, "must lie in"),
        ({"tag": "A" * 26}, "27 trytes"),
        ({"address": "A" * 90}, "81 trytes"),
        ({"bundle": "a" * 81}, "only 9 and A-Z"),
        ({"nonce": 7}, "must be a string"),
    ],
)
def test_construction_validates_every_field(changes: dict[str, object], message: str) -> None:
    transaction = random_transaction(random.Random(8))
    with pytest.raises(InvalidTransactionError, match=message):
        transaction.replace(**changes)


def test_transactions_hashes_names_the_bad_transaction() -> None:
    good = base_trytes()
    with pytest.raises(InvalidTransactionError, match="transaction 1"):
        transactions_hashes([good, good[:-1]])
    with pytest.raises(InvalidTransactionError, match="transaction 2"):
        transactions_hashes([good, good, good[:-1] + "?"])
    with pytest.raises(InvalidTransactionError, match="one string"):
        transactions_hashes(good)
