"""`guard demo --surge` on loopback: the table's numbers must follow from its known inputs.

A WAS of 10 workers x 100 ms serves 100 requests/s; the surge sends 300/s for 2 s and shoppers
wait up to 1.5 s (time for one retry after guard's Retry-After of 1 s). Without guard the WAS
queues far past its workers and pages take many times the service time; with guard (ceiling
10) the WAS never holds more than 10 and served pages take about the service time. Every
request sent lands in exactly one class, as guard itself counted.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from pathlib import Path

import pytest

from guard.tools.demo_surge import Phase, SurgeDemo, compare, render
from guard.tools.surge_report import percentile

ROOT = Path(__file__).resolve().parents[2]
DEMO = SurgeDemo(workers=10, service_time=0.1, duration=2.0, patience=1.5)


@pytest.fixture(name="phases", scope="module")
def phases_fixture() -> tuple[Phase, Phase, str]:
    """Both phases once for the module (they take ~6 s): (without, with, announcements)."""
    import uvloop

    out = io.StringIO()
    bare, guarded = uvloop.run(compare(DEMO, (0, 0), out))
    return bare, guarded, out.getvalue()


def test_the_surge_is_three_times_what_the_was_serves(phases: tuple[Phase, Phase, str]) -> None:
    bare, guarded, _ = phases
    assert DEMO.capacity == pytest.approx(100) and DEMO.arrival_rate == pytest.approx(300)
    for phase in (bare, guarded):
        assert phase.stats.arrivals == 600  # 300/s x 2 s, evenly spaced
        assert phase.stats.in_flight == 0  # every shopper ended: served, gave up or failed


def test_without_guard_the_was_queues_and_shoppers_time_out(
    phases: tuple[Phase, Phase, str],
) -> None:
    bare = phases[0]
    stats = bare.stats
    assert bare.was["max_seen_active"] > 3 * DEMO.workers  # far more inside than it can work on
    assert percentile(stats.latency, 99) > 5 * DEMO.service_time
    assert bare.timeouts > stats.admitted  # most shoppers gave up on a hanging page
    assert bare.was["active"] > 0  # and the WAS is still working for shoppers who left
    assert stats.waiting == stats.refused == 0  # nothing in front of it to say "wait"
    assert stats.admitted + bare.timeouts + bare.other_errors == stats.requests == 600


def test_with_guard_the_was_stays_within_the_ceiling(phases: tuple[Phase, Phase, str]) -> None:
    guarded = phases[1]
    stats = guarded.stats
    assert guarded.ceiling == DEMO.workers
    assert 0 < guarded.was["max_seen_active"] <= DEMO.workers  # the WAS's own count
    assert percentile(stats.latency, 99) < DEMO.service_time + 0.1  # no queue in front of it
    assert min(stats.latency) >= DEMO.service_time - 0.002  # uvloop's timers: whole ms
    assert stats.waiting > 0 and not stats.errors  # the excess saw the waiting page instead
    assert guarded.was["served"] == stats.admitted  # every admitted request was served
    assert guarded.was["active"] == 0  # nothing left behind
    # Served at the WAS's capacity (100/s) while shoppers came or retried (2 s + 1.5 s).
    assert 0.75 * DEMO.duration * DEMO.capacity <= stats.admitted <= 4 * DEMO.capacity
    assert stats.queued > 0  # some shoppers were served after a retry from the waiting page
    sent = stats.admitted + stats.waiting + stats.refused + sum(stats.errors.values())
    assert sent == guarded.guard_counted  # what guard itself answered, by its counters
    assert stats.done + stats.gave_up == stats.arrivals


def test_the_table_shows_both_phases(phases: tuple[Phase, Phase, str]) -> None:
    bare, guarded, announced = phases
    assert "/live" in announced and "http://127.0.0.1:" in announced
    table = render(DEMO, bare, guarded)
    table_part = table.split("\n\n")[0].splitlines()
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", ln.strip()) for ln in table_part)}
    assert rows["without guard"] == ["with guard"]  # the header
    assert rows["shoppers arrived"] == ["600", "600"]
    assert rows["admitted (served)"] == [str(bare.stats.admitted), str(guarded.stats.admitted)]
    assert rows["errors / timeouts"] == [f"0 / {bare.timeouts:,}", "0 / 0"]
    assert rows["WAS peak concurrency"] == [
        f"{bare.was['max_seen_active']:,} (workers 10)",
        f"{guarded.was['max_seen_active']} (workers 10)",
    ]
    assert rows["guard ceiling (max_active)"] == ["none", "10"]
    assert f"never held more than {guarded.was['max_seen_active']} (ceiling 10)" in table


async def test_cli_refuses_a_zero_rate() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "demo", "--surge", "--rate", "0", "--port-base", "1",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and out == b""
    assert b"--rate must be above 0" in err
