"""MAM's Merkle trees of one-time signing keys (Curl-P-27 throughout).

Leaf ``i`` of a channel is the Curl-P-27 flavour of an IOTA address, with the
MAM libraries' own rules (see :mod:`..signing`, kind ``"curl27"``): subseed =
hash(seed + i); every squeezed key chunk is hashed once more; one sponge takes
all key chunks hashed 26 further times, and the leaf is the hash of its output.

A node is the hash of its two children; a node left without a partner (leaf
counts that are not powers of two) moves up a level unchanged, as in
@iota/mam.js, so roots match that library for every count.

A reader climbs from the leaf through the siblings in the payload, taking bit
``k`` of the payload's index to tell whether sibling ``k`` is on the left.
For a leaf whose path crosses a partnerless level there is no sibling there,
so the index a message carries is its *path*: the side bits of the levels that
have a sibling. It equals the leaf's position whenever the tree is full (the
reference libraries write the position, and so cannot sign such leaves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, overload

import numpy as np

from .. import signing
from ..curl import HASH_LENGTH
from ._lanes import LaneSponges, LaneTrits

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..trinary import Trits

MAM_HASH: Final = "curl27"


def hash_pairs(left: LaneTrits, right: LaneTrits) -> LaneTrits:
    """Row-wise Curl-P-27 hash of ``left || right`` (two 243-trit absorbs)."""
    sponges = LaneSponges(left.shape[0])
    sponges.absorb(left)
    sponges.absorb(right)
    return sponges.rate()


@dataclass(frozen=True)
class MerkleTree:
    """The tree over leaves ``start .. start + count - 1`` of a seed."""

    start: int
    levels: tuple[LaneTrits, ...]
    """Level 0 holds the leaves, the last level the root alone."""

    @classmethod
    def from_leaves(cls, start: int, leaves: LaneTrits) -> MerkleTree:
        level = leaves
        levels = [level]
        while level.shape[0] > 1:
            paired = level.shape[0] - level.shape[0] % 2
            parents = hash_pairs(level[0:paired:2], level[1:paired:2])
            level = np.concatenate([parents, level[paired:]])
            levels.append(level)
        return cls(start, tuple(levels))

    @property
    def count(self) -> int:
        return int(self.levels[0].shape[0])

    @property
    def root(self) -> Trits:
        root: Trits = self.levels[-1][0]
        return root

    def path(self, index: int) -> tuple[int, LaneTrits]:
        """The authentication path of leaf ``index``: its side bits and its
        siblings from the leaf up, ``(siblings, 243)``."""
        if not 0 <= index < self.count:
            raise IndexError(f"leaf {index} is outside a tree of {self.count}")
        bits = 0
        siblings: list[Trits] = []
        for depth, level in enumerate(self.levels[:-1]):
            position = index >> depth
            partner = position ^ 1
            if partner < level.shape[0]:
                bits |= (position & 1) << len(siblings)
                siblings.append(level[partner])
        if not siblings:
            return bits, np.zeros((0, HASH_LENGTH), dtype=np.int8)
        return bits, np.stack(siblings)


@overload
def build_trees(
    seed: Trits, security: int, spans: Sequence[tuple[int, int]]
) -> tuple[list[MerkleTree], None]: ...


@overload
def build_trees(
    seed: Trits, security: int, spans: Sequence[tuple[int, int]], signing_leaf: int
) -> tuple[list[MerkleTree], Trits]: ...


def build_trees(
    seed: Trits, security: int, spans: Sequence[tuple[int, int]], signing_leaf: int | None = None
) -> tuple[list[MerkleTree], Trits | None]:
    """The trees over each ``(start, count)`` span, all leaves derived in one batch, and
    the private key of leaf ``signing_leaf`` (which must be one of them) if asked."""
    indexes = [start + offset for start, count in spans for offset in range(count)]
    if signing_leaf is not None and signing_leaf not in indexes:
        raise IndexError(f"leaf {signing_leaf} is in none of the trees")
    keys = signing.keys_many(signing.subseeds_many(seed, indexes, MAM_HASH), security, MAM_HASH)
    leaves = signing.addresses_from_digests_many(signing.digests_many(keys, MAM_HASH), MAM_HASH)
    trees = []
    first = 0
    for start, count in spans:
        trees.append(MerkleTree.from_leaves(start, leaves[first : first + count]))
        first += count
    if signing_leaf is None:
        return trees, None
    key: Trits = keys[indexes.index(signing_leaf)]
    return trees, key
