"""The protocol library against the npm reference libraries, run through node.

``@iota/kerl``, ``@iota/signing``, ``@iota/checksum``, ``@iota/core``,
``@iota/bundle-validator`` and ``@iota/transaction-converter`` 1.0.0-beta.30
check the Kerl side; the Curl-P-27 ISS of ``@iota/mam.js`` 1.0.0-beta.10 (the
signing MAM v0 uses) checks the ``curl27`` side. Inputs come from
``random.Random`` with fixed seeds; each test sends its cases in one batch.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from p2p_energy_protocol import signing
from p2p_energy_protocol.address import add_checksum, is_valid_checksum
from p2p_energy_protocol.bundle import BundleBuilder
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.errors import InvalidBundleError
from p2p_energy_protocol.kerl import kerl_hash
from p2p_energy_protocol.transaction import Transaction, transactions_from_trytes
from p2p_energy_protocol.trinary import TRYTE_ALPHABET, trits_to_trytes, trytes_to_trits

from tests.interop.node_oracle import node_available, run_node

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not node_available(), reason="node and tests/interop/js/node_modules needed"
    ),
]


def random_trytes(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TRYTE_ALPHABET) for _ in range(length))


def oracle(calls: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = run_node("core_oracle.js", {"calls": calls})["results"]
    errors = [result for result in results if isinstance(result, dict) and "error" in result]
    assert not errors, errors
    return results


# -- Kerl and Kerl ISS (@iota/kerl, @iota/signing, @iota/core) ------------------------


def test_kerl_matches_iota_kerl() -> None:
    rng = random.Random(10)
    cases = [
        (random_trytes(rng, 81 * rng.randint(1, 3)), 243 * rng.randint(1, 3)) for _ in range(15)
    ]
    cases += [("M" * 81, 243), ("N" * 81, 486), ("9" * 81, 243)]
    results = oracle([{"op": "kerl", "trytes": t, "length": n} for t, n in cases])
    for (trytes, length), expected in zip(cases, results, strict=True):
        assert trits_to_trytes(kerl_hash(trytes_to_trits(trytes), length)) == expected


def test_subseeds_keys_digests_and_addresses_match_iota_signing() -> None:
    rng = random.Random(11)
    cases = [(random_trytes(rng, 81), rng.randrange(10_000), s) for s in (1, 2, 3, 2)]
    calls: list[dict[str, Any]] = []
    ours: list[str] = []
    for seed, index, security in cases:
        subseed = signing.subseed(trytes_to_trits(seed), index)
        key = signing.key(subseed, security)
        digests = signing.digests(key)
        address = signing.address_from_digests(digests)
        calls += [
            {"op": "subseed", "seed": seed, "index": index},
            {"op": "key", "subseed": trits_to_trytes(subseed), "security": security},
            {"op": "digests", "key": trits_to_trytes(key)},
            {"op": "address", "digests": trits_to_trytes(digests)},
        ]
        ours += [trits_to_trytes(t) for t in (subseed, key, digests, address)]
    assert oracle(calls) == ours


def test_generate_address_matches_iota_core() -> None:
    rng = random.Random(12)
    cases = [(random_trytes(rng, 81), rng.randrange(100_000), case % 3 + 1) for case in range(6)]
    results = oracle(
        [
            {"op": "generate_address", "seed": s, "index": i, "security": sec, "checksum": False}
            for s, i, sec in cases
        ]
    )
    assert [signing.generate_address(s, i, sec) for s, i, sec in cases] == results


def test_normalized_bundle_matches_iota_signing() -> None:
    rng = random.Random(13)
    hashes = [random_trytes(rng, 81) for _ in range(25)] + ["M" * 81, "N" * 81, "9" * 81]
    results = oracle([{"op": "normalized_bundle", "hash": h} for h in hashes])
    assert [signing.normalize_hash(h) for h in hashes] == results


def test_signatures_match_iota_signing_both_ways() -> None:
    rng = random.Random(14)
    cases = [
        (random_trytes(rng, 81), rng.randrange(50), s, random_trytes(rng, 81)) for s in (1, 2, 3)
    ]
    calls: list[dict[str, Any]] = []
    ours: list[list[str]] = []
    for seed, index, security, bundle_hash in cases:
        key = signing.key(signing.subseed(signing.seed_to_trits(seed), index), security)
        signature = signing.signature_fragments(signing.normalize_hash(bundle_hash), key)
        fragments = [trits_to_trytes(f) for f in signature.reshape(security, -1)]
        ours.append(fragments)
        address = signing.generate_address(seed, index, security)
        validate = {"op": "validate_signatures", "address": address, "fragments": fragments}
        calls += [
            {"op": "signature_fragments", "seed": seed, "index": index, "security": security}
            | {"bundle": bundle_hash},
            validate | {"bundle": bundle_hash},
            validate | {"bundle": random_trytes(rng, 81)},
        ]
    results = oracle(calls)
    for case, fragments in enumerate(ours):
        theirs, accepted, accepted_other_hash = results[3 * case : 3 * case + 3]
        assert "".join(fragments) == theirs
        assert accepted is True
        assert accepted_other_hash is False
        seed, index, security, bundle_hash = cases[case]
        their_fragments = [theirs[i : i + 2187] for i in range(0, len(theirs), 2187)]
        address = signing.generate_address(seed, index, security)
        assert signing.validate_signature(address, their_fragments, bundle_hash)


# -- Curl-P-27 ISS as MAM v0 uses it (@iota/mam.js) ------------------------------------


def test_curl27_subseeds_keys_digests_and_addresses_match_mam_js() -> None:
    rng = random.Random(20)
    cases = [(random_trytes(rng, 81), rng.randrange(1000), security) for security in (1, 2, 3)]
    calls: list[dict[str, Any]] = []
    ours: list[str] = []
    for seed, index, security in cases:
        subseed = signing.subseed(trytes_to_trits(seed), index, "curl27")
        key = signing.key(subseed, security, "curl27")
        digest = signing.digests(key, "curl27")
        address = signing.address_from_digests(digest, "curl27")
        from_subseed = {"subseed": trits_to_trytes(subseed), "security": security}
        calls += [
            {"op": "iss_p27_subseed", "seed": seed, "index": index},
            {"op": "iss_p27_private_key"} | from_subseed,
            {"op": "iss_p27_digest_from_subseed"} | from_subseed,
            {"op": "iss_p27_address", "digest": trits_to_trytes(digest)},
        ]
        ours += [trits_to_trytes(t) for t in (subseed, key, digest, address)]
    assert oracle(calls) == ours


def test_curl27_addresses_many_match_mam_js_leaf_by_leaf() -> None:
    rng = random.Random(21)
    seed = random_trytes(rng, 81)
    indexes = [0, 1, 2, 5, 8]
    addresses = signing.addresses_many(trytes_to_trits(seed), indexes, 2, "curl27")
    calls: list[dict[str, Any]] = []
    for index in indexes:
        subseed = trits_to_trytes(signing.subseed(trytes_to_trits(seed), index, "curl27"))
        calls.append({"op": "iss_p27_digest_from_subseed", "subseed": subseed, "security": 2})
    digests = oracle(calls)
    expected = oracle([{"op": "iss_p27_address", "digest": d} for d in digests])
    assert [trits_to_trytes(row) for row in addresses] == expected


def test_curl27_signatures_match_mam_js_both_ways() -> None:
    rng = random.Random(22)
    calls: list[dict[str, Any]] = []
    ours: list[tuple[str, str]] = []
    for security in (1, 2, 3):
        subseed = signing.subseed(trytes_to_trits(random_trytes(rng, 81)), 0, "curl27")
        key = signing.key(subseed, security, "curl27")
        # MAM signs an HMAC its nonce search has balanced; any hash exercises the chains.
        hmac = random_trytes(rng, 81)
        digits = signing.hash_digits(hmac, "curl27")
        signature = signing.signature_fragments(digits, key, "curl27")
        digest = signing.digests_from_signature(digits, signature, "curl27")
        assert np.array_equal(digest, signing.digests(key, "curl27"))
        calls += [
            {"op": "iss_p27_signature", "hash": hmac, "key": trits_to_trytes(key)},
            {"op": "iss_p27_digest_from_signature", "hash": hmac}
            | {"signature": trits_to_trytes(signature)},
        ]
        ours.append((trits_to_trytes(signature), trits_to_trytes(digest)))
    results = oracle(calls)
    assert [(results[i], results[i + 1]) for i in range(0, len(results), 2)] == ours


# -- checksums and transactions (@iota/checksum, @iota/transaction-converter) ----------


def test_address_checksums_match_iota_checksum() -> None:
    rng = random.Random(30)
    addresses = [random_trytes(rng, 81) for _ in range(10)]
    with_checksums = oracle([{"op": "add_checksum", "address": a} for a in addresses])
    assert [add_checksum(a) for a in addresses] == with_checksums
    broken = [a[:-1] + ("9" if a[-1] != "9" else "A") for a in with_checksums]
    verdicts = oracle([{"op": "is_valid_checksum", "address": a} for a in with_checksums + broken])
    assert verdicts == [is_valid_checksum(a) for a in with_checksums + broken]
    assert verdicts == [True] * 10 + [False] * 10


def test_transactions_convert_like_iota_transaction_converter() -> None:
    rng = random.Random(31)
    transactions = []
    for _ in range(8):
        last_index = rng.randrange(0, 4)
        transactions.append(
            Transaction(
                signature_message_fragment=random_trytes(rng, 2187),
                address=random_trytes(rng, 81),
                value=rng.randrange(-(10**12), 10**12),
                obsolete_tag=random_trytes(rng, 27),
                timestamp=rng.randrange(0, 2**31),
                current_index=rng.randrange(0, last_index + 1),
                last_index=last_index,
                bundle=random_trytes(rng, 81),
                trunk_transaction=random_trytes(rng, 81),
                branch_transaction=random_trytes(rng, 81),
                tag=random_trytes(rng, 27),
                attachment_timestamp=rng.randrange(0, 2**40),
                attachment_timestamp_upper_bound=(3**27 - 1) // 2,
                nonce=random_trytes(rng, 27),
            )
        )
    objects = oracle([{"op": "transaction_object", "trytes": t.to_trytes()} for t in transactions])
    for transaction, theirs in zip(transactions, objects, strict=True):
        assert theirs["hash"] == transaction.hash
        assert theirs["address"] == transaction.address
        assert theirs["value"] == transaction.value
        assert theirs["obsoleteTag"] == transaction.obsolete_tag
        assert theirs["currentIndex"] == transaction.current_index
        assert theirs["lastIndex"] == transaction.last_index
        assert theirs["attachmentTimestamp"] == transaction.attachment_timestamp
        assert theirs["nonce"] == transaction.nonce
    rebuilt = oracle([{"op": "transaction_trytes", "transaction": o} for o in objects])
    assert rebuilt == [t.to_trytes() for t in transactions]


# -- bundles (@iota/core prepareTransfers, @iota/bundle-validator) ----------------------

TIMESTAMP = 1_700_000_000


def plan_transfers(rng: random.Random, case: int) -> dict[str, Any]:
    """A prepareTransfers request; value cases spend 1-2 inputs and may need a remainder."""
    seed = random_trytes(rng, 81)
    inputs = []
    if case >= 2:
        for key_index in rng.sample(range(40), rng.randint(1, 2)):
            security = rng.choice((1, 2, 3))
            inputs.append(
                {
                    "address": signing.generate_address(seed, key_index, security),
                    "keyIndex": key_index,
                    "security": security,
                    "balance": rng.randrange(1, 10**9),
                }
            )
    budget = sum(spent["balance"] for spent in inputs)
    transfers = []
    for _ in range(rng.randint(1, 3)):
        value = rng.randrange(0, budget + 1) if inputs else 0
        budget -= value
        transfers.append(
            {
                "address": random_trytes(rng, 80) + rng.choice("9ABCDWXYZ"),
                "value": value,
                "tag": random_trytes(rng, rng.randrange(0, 28)),
                # prepareTransfers adds an empty transaction after a message of exactly
                # n * 2,187 trytes; other lengths agree with pyota's split
                "message": random_trytes(rng, rng.choice((0, 10, 2188, 3000))),
            }
        )
    options: dict[str, Any] = {"inputs": inputs}
    if budget > 0:
        options["remainderAddress"] = signing.generate_address(seed, 45, 2)
    return {"seed": seed, "transfers": transfers, "options": options, "now": TIMESTAMP * 1000}


def build_like(request: dict[str, Any]) -> list[str]:
    builder = BundleBuilder()
    for transfer in request["transfers"]:
        builder.add_transfer(
            transfer["address"], transfer["value"], transfer["tag"], transfer["message"]
        )
    for spent in request["options"]["inputs"]:
        builder.add_input(spent["address"], spent["balance"], spent["keyIndex"], spent["security"])
    if "remainderAddress" in request["options"]:
        builder.add_remainder(request["options"]["remainderAddress"])
    builder.finalize(TIMESTAMP)
    builder.sign(request["seed"])
    return builder.to_trytes()


def in_index_order(trytes: list[str]) -> list[Transaction]:
    return sorted(transactions_from_trytes(trytes), key=lambda t: t.current_index)


def test_bundles_match_prepare_transfers_and_validate_both_ways() -> None:
    rng = random.Random(40)
    requests = [plan_transfers(rng, case) for case in range(8)]
    prepared = oracle([{"op": "prepare_transfers"} | request for request in requests])
    ours = [build_like(request) for request in requests]
    assert ours == prepared

    tampered_bundles = []
    for theirs in prepared:
        validate_bundle(transactions_from_trytes(theirs))
        transactions = in_index_order(theirs)
        # change the tail's essence: the bundle hash no longer matches
        tail = transactions[0]
        changed = tail.replace(timestamp=tail.timestamp + 1)
        broken = [changed if t is tail else t for t in transactions]
        with pytest.raises(InvalidBundleError, match="essences hash"):
            validate_bundle(broken)
        tampered_bundles.append([t.to_trytes() for t in broken])

    # isBundle wants index order; prepareTransfers and to_trytes give the last index first
    verdicts = oracle(
        [{"op": "is_bundle", "trytes": trytes[::-1]} for trytes in ours]
        + [{"op": "is_bundle", "trytes": trytes} for trytes in tampered_bundles]
    )
    assert verdicts == [True] * len(ours) + [False] * len(tampered_bundles)


def test_tampered_signatures_are_rejected_by_both() -> None:
    rng = random.Random(41)
    request = plan_transfers(rng, 5)
    transactions = in_index_order(build_like(request))
    spender = next(t for t in transactions if t.value < 0)
    fragment = spender.signature_message_fragment
    tampered = fragment[:700] + ("A" if fragment[700] != "A" else "B") + fragment[701:]
    broken = [
        t.replace(signature_message_fragment=tampered) if t is spender else t for t in transactions
    ]
    with pytest.raises(InvalidBundleError, match="signature"):
        validate_bundle(broken)
    assert oracle([{"op": "is_bundle", "trytes": [t.to_trytes() for t in broken]}]) == [False]
