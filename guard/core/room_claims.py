"""Which admitted places turned up, in a fixed window behind the watermark.

The watermark passes orders whether or not their holders are still there (so abandoned
places never stall the line). To keep the line moving at the configured rate of *real*
shoppers, the controller needs the share of passed places whose holders came to claim their
pass: ``alive``. A bitmap over the last ``size`` orders below the watermark records the
claims; a cursor trailing the watermark by ``lag`` seconds (long enough for an admitted
holder's next poll) counts the bits it passes into an EWMA. Memory is ``size`` bits,
whatever the length of the line. The same bit answers "replayed" for a place claimed
again while it is in the window.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

FIRST: Final = "first"
AGAIN: Final = "again"
UNTRACKED: Final = "untracked"
"""claim() answers: the first claim in the window, a repeat, or below the window."""

ALIVE_SAMPLE: Final = 200.0
"""Orders that weigh 1 - 1/e in the alive EWMA: noise of ~1/sqrt(200) per step."""


class ClaimWindow:
    """Claims of orders in (low, high], high = floor(watermark), low = high - size."""

    __slots__ = ("_bits", "_history", "alive", "cursor", "high", "lag", "size")

    def __init__(self, size: int, lag: float, start: int = 0) -> None:
        if size < 8 or lag <= 0:
            raise ValueError("a claim window needs size >= 8 and lag > 0")
        self.size = (size + 7) // 8 * 8
        self.lag = lag
        self._bits = bytearray(self.size // 8)
        self.high = start
        self.cursor = start
        self.alive = 1.0
        self._history: deque[tuple[float, int]] = deque()

    def slide(self, high: int, now: float) -> None:
        """The watermark reached ``high``: clear the slots its new orders reuse, sample it."""
        if high > self.high:
            if high - self.high >= self.size:
                self._bits[:] = bytes(len(self._bits))
            else:
                for order in range(self.high + 1, high + 1):
                    self._bits[(order % self.size) >> 3] &= ~(1 << (order & 7)) & 0xFF
            self.high = high
        history = self._history
        if not history or now - history[-1][0] >= 1.0:
            history.append((now, high))
        self._measure(now)

    def claim(self, order: int) -> str:
        """Record that the holder of an admitted ``order`` came for its pass."""
        if order > self.high:
            raise ValueError("only an admitted order can be claimed")
        if order <= self.high - self.size:
            return UNTRACKED
        index = order % self.size
        byte, bit = index >> 3, 1 << (order & 7)
        if self._bits[byte] & bit:
            return AGAIN
        self._bits[byte] |= bit
        return FIRST

    def _measure(self, now: float) -> None:
        """Count the claims the cursor passes, up to the watermark of ``lag`` seconds ago."""
        history = self._history
        while len(history) > 1 and history[1][0] <= now - self.lag:
            history.popleft()
        if not history or history[0][0] > now - self.lag:
            return
        target = history[0][1]
        start = max(self.cursor, self.high - self.size)
        if target <= start:
            self.cursor = max(self.cursor, target)
            return
        claimed = 0
        for order in range(start + 1, target + 1):
            claimed += (self._bits[(order % self.size) >> 3] >> (order & 7)) & 1
        passed = target - start
        weight = 1.0 - math.exp(-passed / ALIVE_SAMPLE)
        self.alive += weight * (claimed / passed - self.alive)
        self.cursor = target
