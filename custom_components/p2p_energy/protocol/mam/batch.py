"""Creating many MAM messages at once, byte-identical to :func:`.channel.create_message`.

Nearly all the work of a message is Curl-P-27 on its signing leaf and the leaf it
announces next: 27 key chunks per security level, each hashed 27 times. Here every
leaf of every message is a lane of bit-sliced :class:`~..curl.CurlBatch` runs:

* leaf sponges (subseed, key squeeze, digest, address) run all leaves together;
  their bit planes go straight into the chain lanes without unpacking, because
  lane ``64 * WL * j + leaf`` holds key chunk ``j`` of ``leaf``;
* the chains (key chunk hashed 1 + 26 times) keep a copy of each step of the
  signing leaves' chunks, so the signature (the key hashed 13 - digit more times)
  is picked from those copies once the HMAC is known instead of hashed again;
* the message sponges and the nonce search run one lane (or one 64-lane word of
  candidates) per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from .. import signing
from ..curl import (
    ALL_ONES,
    HASH_LENGTH,
    STATE_LENGTH,
    Curl,
    CurlBatch,
    curl_hash,
    curl_hash_many,
    pack_lanes,
    unpack_lanes,
)
from ..trinary import Trits, int_to_trits, trits_to_trytes, trytes_to_trits
from ._lanes import SINGLE_SPONGE_LANES, LaneSponges, LaneTrits
from .channel import (
    ADDRESS_ROUNDS,
    MamChannel,
    MamMessage,
    _payload_length,
    message_trytes,
)
from .merkle import MerkleTree
from .nonce import NONCE_LENGTH, find_nonces
from .pascal import pascal_encode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .reference import MamReference

MessageBody = str | Mapping[str, Any] | list[Any]

MAX_BATCH: Final = 256
"""Messages per run: bounds the signing-chain copies (about 22 MB at security 2)."""
_ROUNDS: Final = 27
_KEY_STEPS: Final = 1 + signing.CHAIN_LENGTH
"""A key chunk is hashed once more (MAM's key), then 26 times (public digest material)."""
_CHAIN_GROUP_WORDS: Final = 16
"""Chain lanes per CurlBatch run, in words: about the fastest per lane (L2 cache)."""


@dataclass
class _Item:
    """One message of a run and what its channel needs."""

    channel: MamChannel
    message: Trits
    seed: Trits
    spans: tuple[tuple[int, int], tuple[int, int]]
    signing_leaf: int


def create_message(channel: MamChannel, message: MessageBody) -> MamMessage:
    """Sign and mask ``message`` at the channel's position, then advance the channel.

    When the tree is used up the channel moves to the tree it announced
    (``start += count``, ``count = next_count``), which for equal counts is what
    both reference libraries do.
    """
    (created,) = create_messages([(channel, message)])
    return created


def create_messages(items: Sequence[tuple[MamChannel, MessageBody]]) -> list[MamMessage]:
    """Create a message on each channel, as ``create_message`` one by one would.

    The payloads, roots and addresses are byte-identical to calling
    :func:`.create_message` for each item in order, and every channel is advanced
    the same way (a channel listed twice gets consecutive messages). All channels
    and messages are checked first: if one is invalid, :class:`.MamError` is raised
    and no channel moves.
    """
    bodies = [message_trytes(message) for _, message in items]
    for channel, _ in items:
        channel.validate()
    results: list[MamMessage | None] = [None] * len(items)
    # A channel listed again waits for the next wave, which starts from its new state.
    waves: list[list[int]] = []
    seen: dict[int, int] = {}
    for position, (channel, _) in enumerate(items):
        wave = seen.get(id(channel), -1) + 1
        seen[id(channel)] = wave
        if wave == len(waves):
            waves.append([])
        waves[wave].append(position)
    for wave_positions in waves:
        groups: dict[tuple[int, MamReference], list[int]] = {}
        for position in wave_positions:
            channel = items[position][0]
            groups.setdefault((channel.security, channel.reference), []).append(position)
        for (security, _reference), positions in groups.items():
            for first in range(0, len(positions), MAX_BATCH):
                run = positions[first : first + MAX_BATCH]
                created = _create_run(
                    [_prepare(items[position][0], bodies[position]) for position in run], security
                )
                for position, message in zip(run, created, strict=True):
                    results[position] = message
    return [message for message in results if message is not None]


def _prepare(channel: MamChannel, body: str) -> _Item:
    start, count = channel.start, channel.count
    return _Item(
        channel=channel,
        message=trytes_to_trits(body),
        seed=trytes_to_trits(channel.seed),
        spans=((start, count), (start + count, channel.next_count)),
        signing_leaf=start + channel.index,
    )


def _subseed_preimages(seeds: LaneTrits, indexes: Sequence[int]) -> LaneTrits:
    """Seed + index per row, in balanced ternary wrapping at 243 trits (as signing does)."""
    values = np.zeros((len(indexes), HASH_LENGTH), dtype=np.int8)
    for row, index in enumerate(indexes):
        # Indexes are small, so their trits are few; the carry is added below.
        digits = int_to_trits(index)
        values[row, : digits.size] = digits
    total = seeds.astype(np.int8) + values
    carry: LaneTrits = np.zeros((len(indexes), 1), dtype=np.int8)
    for column in range(HASH_LENGTH):
        digit = total[:, column : column + 1] + carry
        carry = (digit > 1).astype(np.int8) - (digit < -1).astype(np.int8)
        total[:, column : column + 1] = digit - 3 * carry
        if column > 40 and not carry.any():
            break
    return total


class _Leaves:
    """Every leaf of a run: addresses, and the signing leaves' chain steps.

    Chain lane of key chunk ``j`` of leaf ``l`` is ``j * stride + l``. Many leaves
    use a whole number of words per chunk (``stride = 64 * words``), so sponge
    planes move into the chains without unpacking; a few leaves are packed densely
    (``stride = leaves``), or nearly all chain lanes would be padding.
    """

    def __init__(
        self, seeds: LaneTrits, indexes: Sequence[int], signing_lanes: int, security: int
    ) -> None:
        self.count = len(indexes)
        self.signing_lanes = signing_lanes
        self.blocks = security * signing.CHUNKS_PER_FRAGMENT
        self.words = (self.count + 63) // 64
        preimages = _subseed_preimages(seeds, indexes)
        if self.count <= SINGLE_SPONGE_LANES:
            self._few(preimages)
        else:
            self._many(preimages)

    def _few(self, preimages: LaneTrits) -> None:
        """A few leaves: their long sequential sponges are cheaper as single sponges."""
        chunks = np.empty((self.blocks, self.count, HASH_LENGTH), dtype=np.int8)
        subseeds = curl_hash_many(preimages, _ROUNDS)
        for leaf in range(self.count):
            sponge = Curl(_ROUNDS)
            sponge.absorb(subseeds[leaf])
            chunks[:, leaf] = sponge.squeeze(self.blocks * HASH_LENGTH).reshape(-1, HASH_LENGTH)
        finals = self._dense_chains(chunks)
        # Digest: one sponge over all chunks; the leaf is the hash of the digest.
        self.addresses = np.stack(
            [
                curl_hash(curl_hash(finals[:, leaf].reshape(-1), _ROUNDS), _ROUNDS)
                for leaf in range(self.count)
            ]
        )

    def _dense_chains(self, chunks: LaneTrits) -> LaneTrits:
        """Hash ``(block, leaf, 243)`` chunks 27 times, packed densely (lane
        ``block * leaves + leaf``), keeping every step; returns the final chunks."""
        self.stride = self.count
        lanes = self.blocks * self.count
        words = (lanes + 63) // 64
        chunk_low, chunk_high = pack_lanes(chunks.reshape(-1, HASH_LENGTH), words)
        shape = (_KEY_STEPS, HASH_LENGTH, words)
        self.steps_low = np.empty(shape, dtype=np.uint64)
        self.steps_high = np.empty(shape, dtype=np.uint64)
        batch: CurlBatch | None = None
        for first in range(0, words, _CHAIN_GROUP_WORDS):
            columns = slice(first, min(first + _CHAIN_GROUP_WORDS, words))
            width = columns.stop - first
            if batch is None or batch.words != width:
                batch = CurlBatch(64 * width, _ROUNDS)
            batch.low[:HASH_LENGTH] = chunk_low[:, columns]
            batch.high[:HASH_LENGTH] = chunk_high[:, columns]
            for step in range(_KEY_STEPS):
                _zero_capacity(batch)
                batch.transform()
                self.steps_low[step, :, columns] = batch.low[:HASH_LENGTH]
                self.steps_high[step, :, columns] = batch.high[:HASH_LENGTH]
        finals = unpack_lanes(self.steps_low[-1], self.steps_high[-1], lanes)
        return finals.reshape(self.blocks, self.count, HASH_LENGTH)

    def _many(self, preimages: LaneTrits) -> None:
        sponge = CurlBatch(self.count, _ROUNDS)
        # Subseed: hash of seed + index. The key sponge absorbs it into a fresh state.
        sponge.set_state(_with_zero_capacity(preimages))
        sponge.transform()
        _zero_capacity(sponge)
        sponge.transform()
        if self.count % 64 and self.count % 64 <= _MOSTLY_PADDING:
            # The last word of each chunk would be mostly padding: pack the chains densely.
            chunks = np.empty((self.blocks, self.count, HASH_LENGTH), dtype=np.int8)
            for block in range(self.blocks):
                chunks[block] = unpack_lanes(
                    sponge.low[:HASH_LENGTH], sponge.high[:HASH_LENGTH], self.count
                )
                if block + 1 < self.blocks:
                    sponge.transform()
            finals = self._dense_chains(chunks)
            sponge.reset()
            for block in range(self.blocks):
                low, high = pack_lanes(finals[block], self.words)
                sponge.low[:HASH_LENGTH] = low
                sponge.high[:HASH_LENGTH] = high
                sponge.transform()
        else:
            width = self.blocks * self.words
            chunk_low = np.empty((HASH_LENGTH, width), dtype=np.uint64)
            chunk_high = np.empty((HASH_LENGTH, width), dtype=np.uint64)
            for block in range(self.blocks):
                columns = slice(block * self.words, (block + 1) * self.words)
                chunk_low[:, columns] = sponge.low[:HASH_LENGTH]
                chunk_high[:, columns] = sponge.high[:HASH_LENGTH]
                if block + 1 < self.blocks:
                    sponge.transform()
            self._chains(chunk_low, chunk_high)
            sponge.reset()
            for block in range(self.blocks):
                columns = slice(block * self.words, (block + 1) * self.words)
                sponge.low[:HASH_LENGTH] = chunk_low[:, columns]
                sponge.high[:HASH_LENGTH] = chunk_high[:, columns]
                sponge.transform()
        _zero_capacity(sponge)
        sponge.transform()
        self.addresses = unpack_lanes(
            sponge.low[:HASH_LENGTH], sponge.high[:HASH_LENGTH], self.count
        )

    def _chains(
        self, chunk_low: npt.NDArray[np.uint64], chunk_high: npt.NDArray[np.uint64]
    ) -> None:
        """Hash every chunk 27 times in place, keeping each step of the words that
        hold signing leaves (``(step, 243, block * signing word)``)."""
        signing_words = (self.signing_lanes + 63) // 64
        shape = (_KEY_STEPS, HASH_LENGTH, self.blocks, signing_words)
        steps_low = np.empty(shape, dtype=np.uint64)
        steps_high = np.empty(shape, dtype=np.uint64)
        per_group = max(1, _CHAIN_GROUP_WORDS // self.words)
        batch: CurlBatch | None = None
        for first in range(0, self.blocks, per_group):
            last = min(first + per_group, self.blocks)
            blocks = last - first
            columns = slice(first * self.words, last * self.words)
            if batch is None or batch.words != blocks * self.words:
                batch = CurlBatch(64 * blocks * self.words, _ROUNDS)
            batch.low[:HASH_LENGTH] = chunk_low[:, columns]
            batch.high[:HASH_LENGTH] = chunk_high[:, columns]
            rate_low = batch.low[:HASH_LENGTH].reshape(HASH_LENGTH, blocks, self.words)
            rate_high = batch.high[:HASH_LENGTH].reshape(HASH_LENGTH, blocks, self.words)
            for step in range(_KEY_STEPS):
                _zero_capacity(batch)
                batch.transform()
                steps_low[step, :, first:last] = rate_low[:, :, :signing_words]
                steps_high[step, :, first:last] = rate_high[:, :, :signing_words]
            chunk_low[:, columns] = batch.low[:HASH_LENGTH]
            chunk_high[:, columns] = batch.high[:HASH_LENGTH]
        # In the kept words, chunk j of signing leaf l sits at lane 64 * signing_words * j + l.
        self.stride = 64 * signing_words
        self.steps_low = steps_low.reshape(_KEY_STEPS, HASH_LENGTH, -1)
        self.steps_high = steps_high.reshape(_KEY_STEPS, HASH_LENGTH, -1)

    def signatures(self, hmacs: LaneTrits) -> LaneTrits:
        """The signature of each signing leaf for its HMAC: key chunk ``i`` hashed
        ``13 - digit[i mod 81]`` times, i.e. kept chain step ``13 - digit``."""
        lanes = hmacs.shape[0]
        digits = hmacs.reshape(lanes, -1, 3).astype(np.int64) @ np.array([1, 3, 9])
        step_of_chunk = signing.MAX_TRYTE_VALUE - digits[:, np.arange(self.blocks) % 81]
        # Lane of (leaf, chunk) in the kept words.
        lane_of = np.arange(self.blocks)[None, :] * self.stride + np.arange(lanes)[:, None]
        words = self.steps_low.shape[2]
        low = np.zeros((HASH_LENGTH, words), dtype=np.uint64)
        high = np.zeros_like(low)
        for step in range(_KEY_STEPS):
            chosen = np.zeros(64 * words, dtype=bool)
            chosen[lane_of[step_of_chunk == step]] = True
            if not chosen.any():
                continue
            mask = np.packbits(chosen, bitorder="little").view(np.uint64)
            low |= self.steps_low[step] & mask
            high |= self.steps_high[step] & mask
        trits = unpack_lanes(low, high, 64 * words)
        return trits[lane_of.reshape(-1)].reshape(lanes, -1)


def _zero_capacity(batch: CurlBatch) -> None:
    batch.low[HASH_LENGTH:] = ALL_ONES
    batch.high[HASH_LENGTH:] = ALL_ONES


def _with_zero_capacity(rates: LaneTrits) -> LaneTrits:
    state = np.zeros((rates.shape[0], STATE_LENGTH), dtype=np.int8)
    state[:, :HASH_LENGTH] = rates
    return state


_MOSTLY_PADDING: Final = 32
"""Leaves in a chunk's last word at or below which dense chain lanes pay off."""
_SUM_TRITS: Final = np.array([1, -1, 0, 1, -1], dtype=np.int8)
"""Balanced trit of a sum of two trits, indexed by the sum + 2."""


def _add_trits(left: LaneTrits, right: LaneTrits) -> LaneTrits:
    return np.take(_SUM_TRITS, left + right + 2)


def _mask_rows(sponges: LaneSponges, plain: LaneTrits, lengths: npt.NDArray[np.int64]) -> LaneTrits:
    """MAM's mask on every lane at once: each lane masks ``plain[lane, :lengths[lane]]``."""
    masked = np.zeros_like(plain)
    chunks = (lengths + HASH_LENGTH - 1) // HASH_LENGTH
    for chunk in range(int(chunks.max(initial=0))):
        offset = chunk * HASH_LENGTH
        part = plain[:, offset : offset + HASH_LENGTH]
        key = sponges.rate()[:, : part.shape[1]]
        sizes = np.clip(lengths - offset, 1, HASH_LENGTH)
        active = chunks > chunk
        sponges.absorb(part, sizes, None if bool(active.all()) else active)
        masked[:, offset : offset + part.shape[1]] = _add_trits(part, key)
    return masked


def _ragged(rows: Sequence[Trits]) -> tuple[LaneTrits, npt.NDArray[np.int64]]:
    lengths = np.array([row.size for row in rows], dtype=np.int64)
    matrix = np.zeros((len(rows), max(1, int(lengths.max(initial=0)))), dtype=np.int8)
    for lane, row in enumerate(rows):
        matrix[lane, : row.size] = row
    return matrix, lengths


def _create_run(items: Sequence[_Item], security: int) -> list[MamMessage]:
    lanes = len(items)
    reference = items[0].channel.reference
    # Lanes 0..lanes-1 are the signing leaves, then every other leaf of both trees.
    leaf_lane: list[dict[int, int]] = [{item.signing_leaf: lane} for lane, item in enumerate(items)]
    seeds: list[Trits] = [item.seed for item in items]
    indexes: list[int] = [item.signing_leaf for item in items]
    for lane, item in enumerate(items):
        for start, count in item.spans:
            for index in range(start, start + count):
                if index != item.signing_leaf:
                    leaf_lane[lane][index] = len(indexes)
                    seeds.append(item.seed)
                    indexes.append(index)
    leaves = _Leaves(np.stack(seeds), indexes, lanes, security)

    roots: list[Trits] = []
    next_roots: list[Trits] = []
    headers: list[Trits] = []
    tails: list[Trits] = []
    paths: list[int] = []
    sibling_counts: list[int] = []
    for lane, item in enumerate(items):
        (start, count), (next_start, next_count) = item.spans
        tree = MerkleTree.from_leaves(
            start, leaves.addresses[[leaf_lane[lane][i] for i in range(start, start + count)]]
        )
        next_tree = MerkleTree.from_leaves(
            next_start,
            leaves.addresses[
                [leaf_lane[lane][i] for i in range(next_start, next_start + next_count)]
            ],
        )
        path_bits, siblings = tree.path(item.channel.index)
        paths.append(path_bits)
        sibling_counts.append(siblings.shape[0])
        roots.append(tree.root)
        next_roots.append(next_tree.root)
        headers.append(
            np.concatenate(
                [pascal_encode(path_bits, reference), pascal_encode(item.message.size, reference)]
            )
        )
        tails.append(
            np.concatenate([pascal_encode(siblings.shape[0], reference), siblings.ravel()])
        )

    sponges = LaneSponges(lanes)
    sponges.absorb(np.stack([trytes_to_trits(item.channel.sponge_key) for item in items]))
    sponges.absorb(np.stack(roots))
    header_matrix, header_lengths = _ragged(headers)
    sponges.absorb(header_matrix, header_lengths)
    plain, plain_lengths = _ragged(
        [
            np.concatenate([next_root, item.message])
            for next_root, item in zip(next_roots, items, strict=True)
        ]
    )
    masked_messages = _mask_rows(sponges, plain, plain_lengths)
    nonces = find_nonces(sponges.states(), security, reference)
    nonce_lengths = np.full(lanes, NONCE_LENGTH, dtype=np.int64)
    masked_nonces = _mask_rows(sponges, nonces, nonce_lengths)
    signatures = leaves.signatures(sponges.rate())
    rest, rest_lengths = _ragged(
        [np.concatenate([signatures[lane], tails[lane]]) for lane in range(lanes)]
    )
    masked_rest = _mask_rows(sponges, rest, rest_lengths)

    root_matrix = np.stack(roots)
    hashed_roots = curl_hash_many(root_matrix, ADDRESS_ROUNDS)
    results: list[MamMessage] = []
    for lane, item in enumerate(items):
        channel = item.channel
        parts = [
            headers[lane],
            masked_messages[lane, : plain_lengths[lane]],
            masked_nonces[lane],
            masked_rest[lane, : rest_lengths[lane]],
        ]
        content = sum(part.size for part in parts)
        length = _payload_length(
            content, paths[lane], item.message.size, sibling_counts[lane], channel
        )
        payload = np.zeros(length, dtype=np.int8)
        payload[:content] = np.concatenate(parts)
        root = trits_to_trytes(roots[lane])
        address = root if channel.mode == "public" else trits_to_trytes(hashed_roots[lane])
        if channel.index == channel.count - 1:
            channel.start += channel.count
            channel.count = channel.next_count
            channel.index = 0
        else:
            channel.index += 1
        results.append(
            MamMessage(
                payload=trits_to_trytes(payload),
                root=root,
                address=address,
                next_root=trits_to_trytes(next_roots[lane]),
            )
        )
    return results
