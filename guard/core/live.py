"""The live view's per-request bookkeeping: counts per tick, bumped where an exchange ends.

The proxy calls ``LiveRecorder.finished()`` once per request, in ``Exchange.finish()``.
What it costs there (compiled): for a completed exchange, a bucket index from integer
microseconds (one table lookup), one list increment on the (rule, backend) pair's array
(found by an identity check on the last pair, else two dict lookups), one float compare
against the tick's 16th slowest; for a refusal, one HyperLogLog update over
the client address. No allocation in the common case, no lock, no random number.

The live ticker (guard.live, interpreted, once a tick) calls ``tick()``: it swaps every
array for a zeroed spare (O(1) per array on the path's side) and hands the filled ones
back; the ticker reads them, zeroes them and returns them with ``recycle()``.

Latency buckets are log-linear, 4 per octave over integer microseconds: bucket 0 holds
< 1,024 µs, buckets 1..64 split each octave [2^k, 2^(k+1)) µs, k = 10..25, in quarters
(each at most 25 % wider than its lower edge), bucket 65 holds >= 2^26 µs (~67.1 s).
They merge across workers by plain addition, and per-tick percentiles come from them.
"""

from __future__ import annotations

from typing import Final

from guard.core.live_hll import HyperLogLog

__all__ = [
    "BUCKETS",
    "BUCKET_UPPER_US",
    "SLOWEST",
    "Cells",
    "LiveRecorder",
    "SlowEntry",
    "TickCounts",
    "bucket_index",
]

BUCKETS: Final = 66
SLOWEST: Final = 16  # completions kept per tick, slowest first
_FIRST_OCTAVE_BITS: Final = 11  # 1,024 µs has bit_length 11
_LAST_OCTAVE_BITS: Final = 26  # 2^26 - 1 µs is the last value below the overflow bucket
_REFUSED: Final = frozenset({"over_capacity", "over_rate"})


def _exact_index(us: int) -> int:
    if us < 1024:
        return 0
    bits = us.bit_length()
    if bits > _LAST_OCTAVE_BITS:
        return BUCKETS - 1
    # The two bits after the leading one pick the quarter of the octave.
    return (bits - _FIRST_OCTAVE_BITS) * 4 + ((us >> (bits - 3)) & 3) + 1


# Every bucket edge is a multiple of 256 µs, so one byte per 256 µs step (256 KiB) turns
# the index into a single lookup on the request path.
_STEP_BITS: Final = 8
_TABLE_LIMIT: Final = 1 << _LAST_OCTAVE_BITS
_INDEX: Final = bytes(_exact_index(i << _STEP_BITS) for i in range(_TABLE_LIMIT >> _STEP_BITS))


def bucket_index(us: int) -> int:
    """The latency bucket of a duration in whole microseconds (negative counts as 0)."""
    if us >= _TABLE_LIMIT:
        return BUCKETS - 1
    if us < 0:
        return 0
    return _INDEX[us >> _STEP_BITS]


def _upper_bounds() -> tuple[float, ...]:
    bounds = [1024.0]
    for octave in range(_FIRST_OCTAVE_BITS - 1, _LAST_OCTAVE_BITS):
        for quarter in range(4):
            bounds.append(float((1 << octave) * (5 + quarter) // 4))
    bounds.append(float("inf"))
    return tuple(bounds)


BUCKET_UPPER_US: Final[tuple[float, ...]] = _upper_bounds()
"""Exclusive upper edge of each bucket in µs (the last is +inf)."""


class Cells:
    """Hits and errors (status >= 500) per latency bucket, for one rule or one backend."""

    __slots__ = ("errors", "hits")

    def __init__(self) -> None:
        self.hits: list[int] = [0] * BUCKETS
        self.errors: list[int] = [0] * BUCKETS

    def total(self) -> int:
        return sum(self.hits)


SlowEntry = tuple[float, str, str, int, bytes, str]
"""(seconds, rule, backend, status, method, path) of one completion."""


class TickCounts:
    """What one tick collected; handed to the ticker by ``LiveRecorder.tick()``.
    Cells are kept per (rule, backend) pair, so a completion bumps one array."""

    __slots__ = ("pairs", "refused", "slow")

    def __init__(self) -> None:
        self.pairs: dict[str, dict[str, Cells]] = {}  # rule -> backend -> cells
        self.slow: list[SlowEntry] = []
        self.refused = HyperLogLog()

    def by_rule(self) -> dict[str, Cells]:
        out: dict[str, Cells] = {}
        for rule, backends in self.pairs.items():
            for cells in backends.values():
                _add_into(out, rule, cells)
        return out

    def by_backend(self) -> dict[str, Cells]:
        out: dict[str, Cells] = {}
        for backends in self.pairs.values():
            for backend, cells in backends.items():
                _add_into(out, backend, cells)
        return out


def _add_into(out: dict[str, Cells], name: str, cells: Cells) -> None:
    total = out.get(name)
    if total is None:
        total = out[name] = Cells()
    for i in range(BUCKETS):
        total.hits[i] += cells.hits[i]
        total.errors[i] += cells.errors[i]


class LiveRecorder:
    """Per-tick counts of completions and refusals. See the module docstring."""

    __slots__ = ("_current", "_last_backend", "_last_cells", "_last_rule", "_slow_floor", "_spare")

    def __init__(self) -> None:
        self._current = TickCounts()
        self._spare: TickCounts | None = TickCounts()
        self._slow_floor = -1.0  # a completion slower than this enters the slow list
        # The pair of the last completion: names are the same str objects request after
        # request (the config's), so an identity check usually skips both dict lookups.
        self._last_rule = ""
        self._last_backend = ""
        self._last_cells = Cells()

    def finished(
        self,
        rule: str,
        backend: str | None,
        outcome: str,
        status: int,
        seconds: float,
        method: bytes,
        path: str,
        client: str,
    ) -> None:
        """One request ended: a completion at a backend, a refusal, or anything else."""
        if backend is not None:
            index = bucket_index(int(seconds * 1_000_000.0))
            if rule is self._last_rule and backend is self._last_backend:
                cells = self._last_cells
            else:
                cells = self._cells(rule, backend)
            hits = cells.hits
            hits[index] = hits[index] + 1
            if status >= 500:
                errors = cells.errors
                errors[index] = errors[index] + 1
            if seconds > self._slow_floor:
                self._add_slow((seconds, rule, backend, status, method, path))
        elif outcome in _REFUSED:
            self._current.refused.add(client)

    def _cells(self, rule: str, backend: str) -> Cells:
        pairs = self._current.pairs
        backends = pairs.get(rule)
        if backends is None:
            backends = pairs[rule] = {}
        cells = backends.get(backend)
        if cells is None:
            cells = backends[backend] = Cells()
        self._last_rule, self._last_backend, self._last_cells = rule, backend, cells
        return cells

    def _add_slow(self, entry: SlowEntry) -> None:
        slow = self._current.slow
        slow.append(entry)
        if len(slow) > SLOWEST:
            slow.sort(key=_seconds, reverse=True)
            del slow[SLOWEST:]
        if len(slow) == SLOWEST:
            self._slow_floor = min(e[0] for e in slow)

    def tick(self) -> TickCounts:
        """Swap in the spare counts and return the filled ones (give them back with
        ``recycle`` once read). The cells of the spare are reused, zeroed."""
        spare = self._spare if self._spare is not None else TickCounts()
        filled, self._current, self._spare = self._current, spare, None
        self._slow_floor = -1.0
        self._last_rule = self._last_backend = ""  # the cached cells belong to `filled`
        filled.slow.sort(key=_seconds, reverse=True)
        return filled

    def recycle(self, counts: TickCounts) -> None:
        """Zero ``counts`` (read by the ticker) so the next tick can swap it in again."""
        for backends in counts.pairs.values():
            for cells in backends.values():
                cells.hits[:] = _ZEROS
                cells.errors[:] = _ZEROS
        counts.slow.clear()
        counts.refused.clear()
        self._spare = counts

    def forget(self, rules: set[str], backends: set[str]) -> None:
        """Drop the cells of rules and backends a reload removed (bounded memory)."""
        self._last_rule = self._last_backend = ""
        for counts in (self._current, self._spare):
            if counts is None:
                continue
            for name in [n for n in counts.pairs if n not in rules]:
                del counts.pairs[name]
            for by_backend in counts.pairs.values():
                for name in [n for n in by_backend if n not in backends]:
                    del by_backend[name]


_ZEROS: Final = [0] * BUCKETS


def _seconds(entry: SlowEntry) -> float:
    return entry[0]
