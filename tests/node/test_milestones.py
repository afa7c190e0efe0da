"""Milestone bundles: built by the coordinator, verified by every node."""

from __future__ import annotations

from functools import cache

import pytest
from p2p_energy_protocol.bundle_validation import validate_bundle
from p2p_energy_protocol.pow import find_nonce, transaction_weight
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.transaction import Transaction, transactions_from_trytes

from grid_server.node.milestones import (
    MilestoneError,
    VerifiedMilestone,
    build_milestone,
    milestone_index_of,
    milestone_tag,
    verify_milestone,
)

from .helpers import MWM, NULL_HASH

SEED = "MILESTONE9UNIT9TEST".ljust(81, "9")
SECURITY = 1


@cache
def coordinator_address() -> str:
    return generate_address(SEED, 0, SECURITY)


def build(
    index: int = 1, references: tuple[str, ...] = (), previous: str = NULL_HASH
) -> list[Transaction]:
    trytes = build_milestone(
        seed=SEED,
        index=index,
        security=SECURITY,
        coordinator_address=coordinator_address(),
        next_address=generate_address(SEED, index, SECURITY),
        previous_milestone=previous,
        references=list(references),
        min_weight_magnitude=MWM,
    )
    return transactions_from_trytes(trytes)


def verify(
    bundle: list[Transaction], index: int = 1, previous: str = NULL_HASH, signer: str | None = None
) -> VerifiedMilestone:
    return verify_milestone(
        bundle,
        [tx.hash for tx in bundle],
        index=index,
        coordinator_address=coordinator_address(),
        signing_address=signer or generate_address(SEED, index - 1, SECURITY),
        previous_milestone=previous,
        security=SECURITY,
    )


def _repow(tx: Transaction) -> Transaction:
    return tx.replace(nonce=find_nonce(tx.to_trytes(), MWM))


def test_tags_carry_the_index() -> None:
    assert milestone_tag(1) == "A" + "9" * 26
    assert milestone_index_of(milestone_tag(123_456)) == 123_456


def test_a_built_milestone_verifies_and_names_the_next_key() -> None:
    references = tuple(c * 81 for c in "PQRS")
    bundle = build(1, references)
    validate_bundle(bundle)
    assert all(transaction_weight(tx.hash) >= MWM for tx in bundle)
    verified = verify(bundle)
    assert verified.hash == bundle[0].hash
    assert verified.next_address == generate_address(SEED, 1, SECURITY)
    referenced = {h for tx in bundle for h in (tx.trunk_transaction, tx.branch_transaction)}
    assert referenced >= {NULL_HASH, *references}
    # The chain continues with the key named by the previous milestone.
    second = build(2, (), previous=bundle[0].hash)
    assert verify(second, 2, previous=bundle[0].hash, signer=verified.next_address).index == 2


def test_a_milestone_signed_by_another_key_is_rejected() -> None:
    with pytest.raises(MilestoneError, match="does not match signing address"):
        verify(build(1), signer=generate_address(SEED, 7, SECURITY))


def test_a_milestone_for_another_index_is_rejected() -> None:
    with pytest.raises(MilestoneError, match="not tagged with index 2"):
        verify(build(1), index=2, signer=generate_address(SEED, 0, SECURITY))


def test_a_milestone_must_reference_the_previous_one() -> None:
    with pytest.raises(MilestoneError, match="previous milestone"):
        verify(build(1), previous="P" * 81)


def test_rewiring_a_reference_breaks_the_signature() -> None:
    bundle = build(1, ("P" * 81, "Q" * 81, "R" * 81))
    # Re-attach the last transaction with another branch and fix up the chain.
    last = _repow(bundle[-1].replace(branch_transaction="X" * 81))
    rebuilt = [*bundle[:-1], last]
    for position in range(len(rebuilt) - 2, -1, -1):
        rebuilt[position] = _repow(
            rebuilt[position].replace(trunk_transaction=rebuilt[position + 1].hash)
        )
    with pytest.raises(MilestoneError):
        verify(rebuilt)


def test_a_forged_commitment_is_rejected() -> None:
    bundle = build(1)
    forged = bundle[SECURITY].replace(
        signature_message_fragment="F" * 81 + bundle[SECURITY].signature_message_fragment[81:]
    )
    with pytest.raises(MilestoneError):
        verify([*bundle[:SECURITY], _repow(forged), *bundle[SECURITY + 1 :]])


def test_foreign_bundles_at_the_coordinator_address_are_not_milestones() -> None:
    bundle = build(1)
    with pytest.raises(MilestoneError, match="at least 2 transactions"):
        verify(bundle[:1])
    stranger = [tx.replace(address="S" * 81) for tx in bundle]
    with pytest.raises(MilestoneError, match="not a zero-value coordinator one"):
        verify(stranger)
    with pytest.raises(MilestoneError, match="indexes start at 1"):
        build(0)
