"""guard.core.lease: the pure lease arithmetic, on hand-driven time."""

from __future__ import annotations

from guard.core import lease


def test_headroom_is_one_round_trip_of_arrivals_within_bounds() -> None:
    assert lease.headroom(1000, 3, 24_000, 0.002) == 48
    assert lease.headroom(1000, 3, 10, 0.002) == 8  # at least HMIN
    assert lease.headroom(20, 3, 10, 0.002) == 1  # tiny ceilings: 1
    assert lease.headroom(100, 3, 1e6, 0.002) == 33  # at most an even split


def test_want_is_capped_by_the_fair_share_under_overload_but_never_below_use() -> None:
    assert lease.want(used=10, h=8, fair=100, overloaded=False, cap=100) == 18
    assert lease.want(used=10, h=8, fair=12, overloaded=True, cap=100) == 12
    assert lease.want(used=30, h=8, fair=12, overloaded=True, cap=100) == 30
    assert lease.local_limit(alloc=30, fair=12, overloaded=True) == 12


def test_calls_when_low_and_wanting_more_or_holding_too_much() -> None:
    assert lease.needs_call(limit=20, used=17, alloc=20, wanted=25, h=8)
    assert not lease.needs_call(limit=20, used=17, alloc=20, wanted=20, h=8)  # at fair share
    assert lease.needs_call(limit=60, used=10, alloc=60, wanted=18, h=8)


def test_fail_modes() -> None:
    assert lease.fail_limit("keep", kept=7, cap=20) == 7
    assert lease.fail_limit("closed", kept=7, cap=20) == 0
    assert lease.fail_limit("open", kept=7, cap=20) == 20


def test_local_validity_ends_a_margin_before_the_ttl() -> None:
    clock = lease.LeaseClock(ttl=1.0, margin=0.2)
    assert not clock.valid(0.0)
    clock.renewed_at(10.0)
    assert clock.valid(10.79) and not clock.valid(10.8)


def test_degraded_decisions_count_only_while_not_valid() -> None:
    count = lease.DegradedCounter()
    count.look(100, degraded=False)
    count.look(150, degraded=True)
    count.look(170, degraded=False)
    assert count.total == 50


def test_rate_shares_and_bursts() -> None:
    assert (
        lease.rate_want(arrivals_milli=4000, h=100, fair=10_000, overloaded=False, cap=10_000)
        == 5000
    )
    assert (
        lease.rate_want(arrivals_milli=9000, h=100, fair=3000, overloaded=True, cap=10_000) == 3000
    )
    assert lease.burst_share(burst=20, rate_share=5000, rate_cap=10_000, members=3) == 10
    assert lease.burst_share(burst=20, rate_share=1, rate_cap=10_000, members=3) == 2
    assert lease.burst_share(burst=5, rate_share=1, rate_cap=10_000, members=3) == 1
    assert lease.burst_share(burst=20, rate_share=3333, rate_cap=10_000, members=3) == 7
    assert lease.burst_share(burst=20, rate_share=0, rate_cap=10_000, members=3) == 0


def test_ewma_follows_a_running_total() -> None:
    ewma = lease.Ewma(span=0.5)
    for i in range(20):
        ewma.update(total=100 * i, now=i * 0.25)  # 400 per second
    assert abs(ewma.rate - 400) < 1


def test_a_member_over_the_cap_gives_its_part_of_the_excess_back() -> None:
    # Σ 18 after a reload to 12: this member (10, 4 in use) asks 10 - 6 = 4.
    assert lease.give_back(wanted=10, used=4, alloc=10, total=18, cap=12) == 4
    assert lease.give_back(wanted=10, used=8, alloc=10, total=18, cap=12) == 8  # in use stays
    assert lease.give_back(wanted=10, used=4, alloc=10, total=12, cap=12) == 10  # not over
