"""The pre-queue shuffle: a keyed permutation of [1, size] in O(1) memory.

Places taken during the pre-queue are numbered in arrival order, but at the event start the
first ``size`` of them are ordered by ``shuffle.order(number)`` instead, so whoever scripted
the fastest arrival wins nothing. A balanced 4-round Feistel network over the smallest even
bit width covering ``size``, with cycle walking (re-encrypt until the value falls inside the
domain; fewer than 4 rounds of walking on average since the width covers less than 4x size),
is a bijection computed per place: nothing is stored per place, and every node holding the
same seed computes the same order.
"""

from __future__ import annotations

import hashlib
from typing import Final

ROUNDS: Final = 4


class Shuffle:
    """order(n) for n in [1, size] is a permutation of [1, size]; other n map to themselves."""

    __slots__ = ("half_bits", "half_mask", "keys", "size")

    def __init__(self, seed: bytes, size: int) -> None:
        if size < 0:
            raise ValueError("a shuffle size cannot be negative")
        self.size = size
        bits = max(2, (max(size, 1) - 1).bit_length())
        bits += bits & 1
        self.half_bits = bits // 2
        self.half_mask = (1 << self.half_bits) - 1
        self.keys = [hashlib.sha256(seed + bytes([r])).digest()[:16] for r in range(ROUNDS)]

    def order(self, number: int) -> int:
        if number < 1 or number > self.size:
            return number
        value = self._encrypt(number - 1)
        while value >= self.size:
            value = self._encrypt(value)
        return value + 1

    def _encrypt(self, value: int) -> int:
        left = value >> self.half_bits
        right = value & self.half_mask
        for key in self.keys:
            digest = hashlib.blake2b(right.to_bytes(8, "big"), key=key, digest_size=8).digest()
            left, right = right, (left ^ int.from_bytes(digest, "big")) & self.half_mask
        return (left << self.half_bits) | right
