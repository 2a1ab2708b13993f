"""Slow clients are cut off by guard's own deadlines, and a slow client never holds an
active-transaction slot longer than those deadlines allow.

The client side runs in-process on a recording transport (tests/support/protocol.py) and
time is a FakeClock: each test moves the clock and calls the sweeper, so a deadline is
checked to the millisecond, both that it has not fired just before and that it fires at
the moment it is due. The backend behind guard is the real simulated WAS on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.polling import poll
from tests.support.polling import poll_async as eventually
from tests.support.protocol import Harness, build_harness
from tests.support.servers import StartGuard, StartWas, Was, backends_yaml, write_config

DEADLINE = 0.3
EARLY = DEADLINE - 0.001  # a sweep this long after the deadline started must not fire it
LATE = 0.002  # ... and one this much later must (2 ms: clear of float rounding)
SLOW = f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
waiting_page: waiting.html
access_log: {{format: json, path: access.log}}
timeouts: {{shutdown: 500ms}}
limits:
  header_timeout: {int(DEADLINE * 1000)}ms
  body_timeout: {int(DEADLINE * 1000)}ms
  send_timeout: {int(DEADLINE * 1000)}ms
  keepalive_timeout: {int(DEADLINE * 1000)}ms
rules:
  - {{name: event, path: /event/**, max_active: 5}}
"""

Slow = tuple[Harness, Was]


@pytest.fixture
async def slow(start_was: StartWas, tmp_path: Path) -> AsyncIterator[Slow]:
    was = await start_was()
    harness = build_harness(write_config(tmp_path, SLOW + backends_yaml(was)))
    yield harness, was
    harness.close()


def was_idle(was: Was) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await was.stats())["active"] == 0

    return check


def assert_timeout_answer(data: bytes) -> None:
    """Closing silently or with a 408 are both fine; anything else is not."""
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]


async def test_silent_connection_closed_after_header_timeout(slow: Slow) -> None:
    h, was = slow
    _conn, transport = h.connect()
    h.sweep_after(EARLY)
    assert not transport.closing
    h.sweep_after(LATE)
    assert transport.closing
    assert_timeout_answer(bytes(transport.received))
    await transport.lost.wait()
    assert not h.server.connections
    assert (await was.stats())["served"] == 0


async def test_head_trickled_byte_by_byte_is_cut_after_header_timeout(slow: Slow) -> None:
    """header_timeout bounds the whole head, not the gap between bytes."""
    h, was = slow
    conn, transport = h.connect()
    head = b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 10_000
    sent = 0
    while not transport.closing:  # a slowloris client: one byte every 20 ms
        conn.data_received(head[sent : sent + 1])
        sent += 1
        h.sweep_after(0.02)
        assert sent * 0.02 <= DEADLINE + 0.03, "the trickled head was never cut"
    assert sent * 0.02 > DEADLINE - 0.01  # not before its time either
    assert_timeout_answer(bytes(transport.received))
    assert (await was.stats())["served"] == 0
    assert h.all_zero(), h.active()


async def test_keepalive_idle_connection_closed_after_keepalive_timeout(slow: Slow) -> None:
    h, _was = slow
    conn, transport = h.connect()
    conn.data_received(b"GET /event/a HTTP/1.1\r\nHost: a\r\n\r\n")
    await poll(lambda: transport.statuses() == [200] and conn.active is None)
    answered = len(transport.received)
    h.sweep_after(EARLY)
    assert not transport.closing
    h.sweep_after(LATE)
    assert transport.closing
    assert len(transport.received) == answered  # closed without another byte


async def test_stalled_body_is_cut_after_body_timeout_and_the_slot_released(slow: Slow) -> None:
    h, was = slow
    conn, transport = h.connect()
    conn.data_received(b"POST /event/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
    conn.data_received(b"x" * 10)
    assert h.active()["rule:event"] == 1
    await was.wait_active(1)
    h.sweep_after(EARLY)
    assert h.active()["rule:event"] == 1
    h.sweep_after(LATE)
    assert h.all_zero(), h.active()  # given back at the deadline, not later
    assert transport.statuses() in ([], [408]), bytes(transport.received)
    assert transport.closing
    await eventually(was_idle(was), 2.0, "the WAS exchange was not aborted")
    assert (await was.stats())["served"] == 0  # the WAS never got a complete request


async def test_body_trickled_with_short_gaps_cannot_hold_the_slot_indefinitely(
    slow: Slow,
) -> None:
    """R.U.D.Y.: one body byte every body_timeout/3, so no single gap ever reaches
    body_timeout. The slot must still be given back once body_timeout has passed and the
    body falls short of limits.min_body_rate, not held for as long as the client trickles."""
    h, was = slow
    conn, transport = h.connect()
    conn.data_received(b"POST /event/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    assert h.active()["rule:event"] == 1
    await was.wait_active(1)
    elapsed = 0.0
    while not h.all_zero():
        assert elapsed <= 2 * DEADLINE, f"slot still held after {elapsed:.2f}s: {h.active()}"
        conn.data_received(b"x")
        h.sweep_after(DEADLINE / 3)
        elapsed += DEADLINE / 3
    assert elapsed > DEADLINE  # the grace of body_timeout was given
    assert transport.closing
    await eventually(was_idle(was), 2.0, "the WAS exchange was not aborted")


async def test_client_that_does_not_read_is_cut_after_send_timeout_and_slot_released(
    slow: Slow,
) -> None:
    h, was = slow
    conn, transport = h.connect()
    transport.client_reads = False  # the client reads nothing
    size = 500 * 1024 * 1024
    conn.data_received(b"GET /__was/bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
    assert h.active()["site"] == 1
    await poll(lambda: transport.writing_paused, 5.0, lambda: "output never backed up")
    h.sweep_after(EARLY)
    assert h.active()["site"] == 1
    h.sweep_after(LATE)
    assert transport.aborted
    await transport.lost.wait()  # the abort's connection_lost ends the exchange
    assert h.all_zero(), h.active()
    assert len(transport.received) + len(transport.unread) < size  # cut, not delivered
    await eventually(was_idle(was), 2.0, "guard did not abort the backend exchange")


async def test_deadline_defaults_are_finite_and_sane(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    limits = guard.runtime.loaded.config.limits
    assert 0 < limits.header_timeout <= 60
    assert 0 < limits.body_timeout <= 120
    assert 0 < limits.send_timeout <= 120
    assert 0 < limits.keepalive_timeout <= 300
