"""Per-pass caps on requests in flight: one pass cannot carry a crowd.

A pass token can be copied like any cookie. The proxy takes a PassLease before forwarding a
pass holder's request and releases it when the response ends; more than ``limit`` requests
in flight on one pass id are refused. The map holds only pass ids with requests in flight,
so it is bounded by the requests in flight, not by the passes ever minted.
"""

from __future__ import annotations


class PassLease:
    """One request in flight on one pass. release() is idempotent, like Ticket.release()."""

    __slots__ = ("_owner", "pass_id", "released")

    def __init__(self, owner: PassInFlight, pass_id: int) -> None:
        self._owner = owner
        self.pass_id = pass_id
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._owner._drop(self.pass_id)


class PassInFlight:
    """Counts requests in flight per pass id, at most ``limit`` each."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a per-pass in-flight limit must be >= 1")
        self.limit = limit
        self._counts: dict[int, int] = {}

    def acquire(self, pass_id: int) -> PassLease | None:
        """A lease, or None when this pass already has ``limit`` requests in flight."""
        counts = self._counts
        held = counts.get(pass_id, 0)
        if held >= self.limit:
            return None
        counts[pass_id] = held + 1
        return PassLease(self, pass_id)

    def in_flight(self, pass_id: int) -> int:
        return self._counts.get(pass_id, 0)

    def __len__(self) -> int:
        """Pass ids with requests in flight (0 when the proxy is idle)."""
        return len(self._counts)

    def _drop(self, pass_id: int) -> None:
        counts = self._counts
        held = counts.get(pass_id, 0)
        if held <= 1:
            counts.pop(pass_id, None)
        else:
            counts[pass_id] = held - 1
