"""Reload builds a new Admission over the same State: what must carry over, and what not."""

from __future__ import annotations

from guard.core import Admission, Refusal, SiteView, Ticket
from tests.unit.test_core_fakes import backend, build, config, rule


def admit(admission: Admission, path: str = "/event") -> Ticket:
    result = admission.admit(admission.match("GET", path), "10.0.0.1")
    assert isinstance(result, Ticket), result
    return result


def test_reload_keeps_counts_health_outcomes_and_unchanged_buckets() -> None:
    event = rule("event", "/event/**", rate="10/s", burst=3, max_active=2)
    old, clock, state = build(config(backend("a"), backend("b"), rules=(event,), max_active=10))
    held = admit(old)
    admit(old).release()  # 1 token left
    old.record(held.rule, "admitted")
    old.backends[1].health.mark_failure(clock(), 5.0)

    new = Admission(config(backend("a"), backend("b"), rules=(event,)), state, clock)
    snap = new.snapshot()
    assert snap.site == SiteView(active=1, max_active=None)
    assert [r.active for r in snap.rules] == [1, 0]
    assert snap.rules[0].outcomes["admitted"] == 1
    assert [b.up for b in snap.backends] == [True, False]
    rule_now = new.match("GET", "/event")
    assert rule_now.bucket is held.rule.bucket  # same rate and burst: same bucket
    admit(new)
    assert isinstance(new.admit(rule_now, "x"), Refusal)  # max_active 2 counts the old ticket


def test_changed_rate_gets_a_new_full_bucket() -> None:
    old, clock, state = build(config(rules=(rule("event", "/event", rate="1/s", burst=1),)))
    admit(old).release()
    new = Admission(config(rules=(rule("event", "/event", rate="2/s", burst=1),)), state, clock)
    assert new.match("GET", "/event").bucket is not old.match("GET", "/event").bucket
    admit(new)  # a fresh bucket starts full


def test_changed_burst_also_replaces_per_client_buckets() -> None:
    login = rule("login", "/login", rate="1/m", per_client=True)
    old, clock, state = build(config(rules=(login,)))
    same = Admission(config(rules=(login,)), state, clock)
    assert same.match("GET", "/login").client_buckets is old.match("GET", "/login").client_buckets
    bigger = rule("login", "/login", rate="1/m", burst=5, per_client=True)
    new = Admission(config(rules=(bigger,)), state, clock)
    before = old.match("GET", "/login").client_buckets
    assert new.match("GET", "/login").client_buckets is not before


def test_old_ticket_released_after_reload_brings_gauges_to_zero() -> None:
    cfg = config(backend("a"), backend("b"), rules=(rule("event", "/event/**"),), max_active=5)
    old, clock, state = build(cfg)
    tickets = [admit(old), admit(old), admit(old, "/other")]
    # The new config drops backend b and renames nothing else.
    new = Admission(config(backend("a"), rules=(rule("event", "/event/**"),)), state, clock)
    assert new.snapshot().site.active == 3
    for t in tickets:
        t.release()
    snap = new.snapshot()
    assert snap.site.active == 0
    assert {b.active for b in snap.backends} == {0}
    assert {r.active for r in snap.rules} == {0}
    assert {p.active for p in snap.pairs} == {0}
    assert state.counter(("backend", "b")).value == 0  # the dropped backend too


def test_rule_of_an_old_generation_admitted_by_a_new_one() -> None:
    old, clock, state = build(config(rules=(rule("gone", "/gone"),)))
    stale = old.match("GET", "/gone")
    new = Admission(config(), state, clock)  # "gone" no longer configured
    t = new.admit(stale, "10.0.0.1")
    assert isinstance(t, Ticket)
    assert state.counter(("pair", "a", "gone")).value == 1
    t.release()
    assert new.snapshot().site.active == 0
    assert state.counter(("pair", "a", "gone")).value == 0
