"""The straightforward one-message MAM creation, kept as the oracle for the optimised path.

This is the implementation ``create_message`` had before messages were created
in shared Curl lanes (:mod:`p2p_energy_protocol.mam.batch`); it composes the
signing, Merkle and nonce modules step by step, as the blueprint describes, and
is checked against @iota/mam.js and @iota/mam by the interop tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from p2p_energy_protocol import signing
from p2p_energy_protocol.curl import HASH_LENGTH, Curl
from p2p_energy_protocol.mam import MamChannel, MamMessage, mam_address, message_trytes
from p2p_energy_protocol.mam.channel import SPONGE_ROUNDS, _payload_length, mask
from p2p_energy_protocol.mam.merkle import MAM_HASH, build_trees
from p2p_energy_protocol.mam.nonce import find_nonce
from p2p_energy_protocol.mam.pascal import pascal_encode
from p2p_energy_protocol.trinary import trits_to_trytes, trytes_to_trits

if TYPE_CHECKING:
    from collections.abc import Mapping


def reference_create_message(
    channel: MamChannel, message: str | Mapping[str, Any] | list[Any]
) -> MamMessage:
    """Sign and mask ``message`` at the channel's position, then advance the channel.

    When the tree is used up the channel moves to the tree it announced
    (``start += count``, ``count = next_count``), which for equal counts is what
    both reference libraries do.
    """
    channel.validate()
    message_trits = trytes_to_trits(message_trytes(message))
    seed = trytes_to_trits(channel.seed)
    (tree, next_tree), key = build_trees(
        seed,
        channel.security,
        [(channel.start, channel.count), (channel.start + channel.count, channel.next_count)],
        channel.start + channel.index,
    )
    root, next_root = tree.root, next_tree.root
    path_bits, siblings = tree.path(channel.index)

    sponge = Curl(SPONGE_ROUNDS)
    sponge.absorb(trytes_to_trits(channel.sponge_key))
    sponge.absorb(root)
    reference = channel.reference
    header = np.concatenate(
        [pascal_encode(path_bits, reference), pascal_encode(message_trits.size, reference)]
    )
    sponge.absorb(header)
    masked_message = mask(sponge, np.concatenate([next_root, message_trits]))
    masked_nonce = mask(sponge, find_nonce(sponge.state, channel.security, reference))
    hmac = sponge.state[:HASH_LENGTH]
    signature = signing.signature_fragments(signing.hash_digits(hmac, MAM_HASH), key, MAM_HASH)
    masked_signature = mask(
        sponge,
        np.concatenate([signature, pascal_encode(siblings.shape[0], reference), siblings.ravel()]),
    )
    payload = np.concatenate([header, masked_message, masked_nonce, masked_signature])
    length = _payload_length(
        payload.size, path_bits, message_trits.size, siblings.shape[0], channel
    )
    payload = np.concatenate([payload, np.zeros(length - payload.size, dtype=np.int8)])

    root_trytes = trits_to_trytes(root)
    if channel.index == channel.count - 1:
        channel.start += channel.count
        channel.count = channel.next_count
        channel.index = 0
    else:
        channel.index += 1
    return MamMessage(
        payload=trits_to_trytes(payload),
        root=root_trytes,
        address=mam_address(root_trytes, channel.mode),
        next_root=trits_to_trytes(next_root),
    )
