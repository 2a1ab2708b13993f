"""Back-pressure and deadlines of a client connection.

Reading pauses for named reasons (bits): a request body buffered while no backend takes it,
a full pipeline, or output the client has not read; it resumes when no reason is left.
Deadlines are fields checked by one sweeper (ProxyServer.sweep), never a timer per request.
While guard itself stopped reading, the client's read deadlines do not run (they move by
the length of the pause): a slow backend is never blamed on the client.
"""

from __future__ import annotations

from typing import Final

from guard.proxy.connection import PHASE_BODY, PHASE_IDLE, ConnectionState

INF: Final = float("inf")
# Reasons to pause reading from the client, as bits (reading resumes when none is left).
PAUSE_BODY: Final = 1
PAUSE_PIPELINE: Final = 2
PAUSE_OUTPUT: Final = 4


class FlowControl(ConnectionState):
    """Part of ClientConnection: pausing, resuming, and the deadlines of each phase."""

    __slots__ = ()

    # -- flow control -----------------------------------------------------------------
    def _pause(self, bit: int, on: bool) -> None:
        before = self.pause_bits
        self.pause_bits = before | bit if on else before & ~bit
        if self.transport is None or self.closing or bool(before) == bool(self.pause_bits):
            return
        now = self.clock()
        if self.pause_bits:
            self.paused_at = now
            self.transport.pause_reading()
        else:
            # Guard stopped reading, not the client: its read deadlines move by the pause.
            shift = now - self.paused_at
            self.deadline += shift
            self.body_started += shift
            self.transport.resume_reading()

    @property
    def output_paused(self) -> bool:
        return bool(self.pause_bits & PAUSE_OUTPUT)

    def _body_pressure(self, on: bool) -> None:
        self._pause(PAUSE_BODY, on)

    def pause_writing(self) -> None:
        """The client reads slower than we answer: stop reading its requests and the
        backend's response until it catches up, and start the send deadline."""
        self.send_deadline = self.clock() + self.limits.send_timeout
        self._pause(PAUSE_OUTPUT, True)
        if self.streaming is not None:
            self.streaming.pause_reading()

    def resume_writing(self) -> None:
        self.send_deadline = INF
        self._pause(PAUSE_OUTPUT, False)
        if self.streaming is not None:
            self.streaming.resume_reading()
        self._start_next()

    # -- deadlines --------------------------------------------------------------------
    def check_deadlines(self, now: float) -> None:
        if now >= self.send_deadline:
            self.abort()  # a client that does not read releases its slot with the abort
        elif self.pause_bits:
            return  # guard is not reading: the client cannot be late
        elif now >= self.deadline or self._body_too_slow(now):
            self.deadline = INF
            self._read_deadline_expired()

    def _read_deadline_expired(self) -> None:
        active, parsing = self.active, self.parsing
        self.stop_parsing = True
        if self.phase == PHASE_IDLE:
            self.close_after_write()
        elif self.phase == PHASE_BODY and parsing is not None and parsing is active:
            parsing.keep_alive = False
            parsing.fail(408)
            if parsing.discarding:  # no exchange is left to end the connection
                self.close_after_write()
        elif active is None:
            self._write_final(408)
        else:
            # A queued request is late while an earlier one is answered: let that answer
            # finish, then close (the late request was never dispatched).
            self.pipeline.clear()
            active.keep_alive = False

    def _body_too_slow(self, now: float) -> bool:
        """After a grace of body_timeout, the body must average limits.min_body_rate."""
        if self.phase != PHASE_BODY or self.parsing is None:
            return False
        late = now - self.body_started - self.limits.body_timeout
        return late > 0 and self.parsing.body_bytes < self.limits.min_body_rate * late
