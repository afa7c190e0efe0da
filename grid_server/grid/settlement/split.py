"""Exact splits of whole IOTA and mWh (shared by the engine and the mechanisms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class SettlementError(RuntimeError):
    """A settlement could not be computed or broke one of its invariants."""


def allocate(total: int, weights: Sequence[int], keys: Sequence[str]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` exactly (largest remainder)."""
    weight = sum(weights)
    if weight == 0:
        if total:
            raise SettlementError(f"cannot share {total} among zero weights")
        return [0] * len(weights)
    shares = [total * w // weight for w in weights]
    left = total - sum(shares)
    if left:
        remainders = [total * w % weight for w in weights]
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], keys[i]))
        for index in order[:left]:
            shares[index] += 1
    return shares


# Each bill's and payout's local part (energy, value, the grid's cut) is recorded in units
# of 1/SHARE_SCALE: exact enough that statements sum a month of slots and round once per
# day, small enough that BigInteger holds any slot's figures.
SHARE_SCALE = 10**6


def share_units(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` in units of 1/SHARE_SCALE, rounded half up (0 for an
    empty denominator)."""
    if denominator == 0:
        return 0
    quotient, remainder = divmod(numerator * SHARE_SCALE, denominator)
    return quotient + (2 * remainder >= denominator)
