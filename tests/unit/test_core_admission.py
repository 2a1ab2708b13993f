"""Admission over a fake clock: ceilings, rates, backend choice, health, tickets."""

from __future__ import annotations

import pytest

from guard.core import Admission, Refusal, Ticket
from tests.unit.test_core_fakes import backend, build, config, rule


def admit(admission: Admission, path: str = "/", ip: str = "10.0.0.1") -> Ticket | Refusal | None:
    return admission.admit(admission.match("GET", path), ip)


def ticket(result: Ticket | Refusal | None) -> Ticket:
    assert isinstance(result, Ticket), result
    return result


def refusal(result: Ticket | Refusal | None) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def gauges(admission: Admission) -> tuple[int, list[int], list[int], list[int]]:
    snap = admission.snapshot()
    return (
        snap.site.active,
        [b.active for b in snap.backends],
        [r.active for r in snap.rules],
        [p.active for p in snap.pairs],
    )


def test_site_ceiling_binds_alone() -> None:
    admission, _, _ = build(config(backend("a", 100), max_active=2))
    held = [ticket(admit(admission)) for _ in range(2)]
    over = refusal(admit(admission))
    assert (over.outcome, over.status, over.rule.name) == ("over_capacity", 503, "default")
    held[0].release()
    ticket(admit(admission))


def test_backend_ceiling_binds_alone() -> None:
    admission, _, _ = build(config(backend("a", 1), backend("b", 2)))
    held = [ticket(admit(admission)) for _ in range(3)]
    assert sorted(t.backend.name for t in held) == ["a", "b", "b"]
    assert refusal(admit(admission)).outcome == "over_capacity"


def test_rule_ceiling_binds_alone() -> None:
    cfg = config(backend("a", 100), rules=(rule("event", "/event/**", max_active=1),))
    admission, _, _ = build(cfg)
    ticket(admit(admission, "/event/1"))
    assert refusal(admit(admission, "/event/2")).rule.name == "event"
    ticket(admit(admission, "/other"))  # other rules are not limited by it


def test_rule_rate_refuses_with_503_and_refills() -> None:
    cfg = config(rules=(rule("event", "/event/**", rate="2/s", burst=2),))
    admission, clock, _ = build(cfg)
    for _ in range(2):
        ticket(admit(admission, "/event")).release()
    over = refusal(admit(admission, "/event", ip="10.9.9.9"))  # rule-wide: any client
    assert (over.outcome, over.status) == ("over_rate", 503)
    clock.advance(0.5)
    ticket(admit(admission, "/event"))


def test_per_client_rate_is_429_and_per_address() -> None:
    cfg = config(rules=(rule("login", "/login", rate="1/m", per_client=True),))
    admission, clock, _ = build(cfg)
    ticket(admit(admission, "/login", "10.0.0.1")).release()
    over = refusal(admit(admission, "/login", "10.0.0.1"))
    assert (over.outcome, over.status) == ("over_rate", 429)
    ticket(admit(admission, "/login", "10.0.0.2"))
    clock.advance(60)
    ticket(admit(admission, "/login", "10.0.0.1"))


def test_capacity_refusal_consumes_no_token() -> None:
    cfg = config(rules=(rule("event", "/event", rate="1/s", burst=2, max_active=1),))
    admission, _, _ = build(cfg)
    first = ticket(admit(admission, "/event"))  # 1 token left
    for _ in range(5):
        assert refusal(admit(admission, "/event")).outcome == "over_capacity"
    first.release()
    ticket(admit(admission, "/event")).release()  # the token was still there
    assert refusal(admit(admission, "/event")).outcome == "over_rate"


def test_rate_refusal_takes_no_slot() -> None:
    cfg = config(rules=(rule("event", "/event", rate="1/s", burst=1),))
    admission, _, _ = build(cfg)
    ticket(admit(admission, "/event"))
    refusal(admit(admission, "/event"))
    assert gauges(admission)[0] == 1


def test_ties_go_round_robin() -> None:
    admission, _, _ = build(config(backend("a"), backend("b"), backend("c")))
    chosen = []
    for _ in range(6):
        t = ticket(admit(admission))
        chosen.append(t.backend.name)
        t.release()
    assert chosen == ["a", "b", "c", "a", "b", "c"]


def test_least_active_relative_to_ceiling() -> None:
    admission, _, _ = build(config(backend("small", 2), backend("big", 10)))
    chosen = [ticket(admit(admission)).backend.name for _ in range(12)]
    assert chosen.count("small") == 2 and chosen.count("big") == 10
    # At no point did small run ahead of big relative to its ceiling.
    assert chosen[:2] == ["small", "big"]


def test_draining_backend_gets_nothing_new() -> None:
    cfg = config(backend("a", drain=True), backend("b"), rules=(rule("s", "/s/**", bypass=True),))
    admission, _, _ = build(cfg)
    assert {ticket(admit(admission, p)).backend.name for p in ["/", "/", "/s/x"]} == {"b"}


def test_down_backend_cooldown_and_recovery() -> None:
    admission, clock, _ = build(config(backend("a"), backend("b")))
    a = admission.backends[0]
    a.health.mark_failure(clock(), a.cooldown)
    assert {ticket(admit(admission)).backend.name for _ in range(4)} == {"b"}
    admission.backends[1].health.mark_failure(clock(), 5.0)
    assert refusal(admit(admission)).outcome == "unavailable"  # nothing usable: an outage
    clock.advance(a.cooldown)
    assert ticket(admit(admission)).backend.name == "a"  # tried again after the cooldown
    assert admission.snapshot().backends[0].up is False  # ... but not up yet
    a.health.mark_success()
    assert admission.snapshot().backends[0].up is True


def test_bypass_ignores_ceilings_but_not_health() -> None:
    cfg = config(
        backend("a", 1),
        backend("b", 1),
        max_active=1,
        rules=(rule("static", "/static/**", bypass=True), rule("lim", "/lim", max_active=1)),
    )
    admission, clock, _ = build(cfg)
    ticket(admit(admission, "/lim"))
    refusal(admit(admission, "/"))
    held = [ticket(admit(admission, "/static/x.css")) for _ in range(4)]
    assert sorted(t.backend.name for t in held) == ["a", "a", "b", "b"]  # least active
    assert gauges(admission)[0] == 5  # counted in every gauge
    for slot in admission.backends:
        slot.health.mark_failure(clock(), 5.0)
    assert refusal(admit(admission, "/static/x.css")).outcome == "unavailable"  # none up


def test_blocked_rule_and_blocked_client() -> None:
    cfg = config(
        rules=(
            rule("admin", "/admin/**", block=True, action="reject"),
            rule("static", "/static/**", bypass=True),
        ),
        block_ips=("203.0.113.0/24", "2001:db8::/32"),
        retry_after=2.5,
    )
    admission, _, _ = build(cfg)
    by_rule = refusal(admit(admission, "/admin/x"))
    assert (by_rule.outcome, by_rule.status, by_rule.reject, by_rule.retry_after) == (
        "blocked",
        403,
        True,
        3,
    )
    for ip in ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8::1"]:
        by_ip = refusal(admit(admission, "/static/a.css", ip))  # even before bypass
        assert (by_ip.outcome, by_ip.status, by_ip.reject) == ("blocked", 403, False)
        assert by_ip.rule.name == "static"  # counted under the matched rule
    for ip in ["198.51.100.1", "not-an-ip", "", "2001:db9::1"]:
        ticket(admit(admission, "/", ip))
    assert gauges(admission)[0] == 4


def test_block_cache_is_bounded() -> None:
    admission, _, _ = build(config(block_ips=("203.0.113.0/24",)))
    for i in range(10_000):
        t = admit(admission, "/", f"10.{i // 256 % 256}.{i % 256}.1")
        ticket(t).release()
    assert len(admission._block_cache) <= 4096


def test_reject_action_and_retry_after_on_refusals() -> None:
    cfg = config(
        backend("a", 1),
        rules=(rule("api", "/api/**", action="reject"),),
        retry_after=0.2,
    )
    admission, _, _ = build(cfg)
    ticket(admit(admission, "/api/x"))
    api = refusal(admit(admission, "/api/y"))
    other = refusal(admit(admission, "/"))
    assert (api.reject, api.retry_after) == (True, 1)
    assert (other.reject, other.rule.name) == (False, "default")


def test_release_is_idempotent() -> None:
    cfg = config(backend("a"), backend("b"), max_active=5, rules=(rule("r", "/r", max_active=3),))
    admission, _, _ = build(cfg)
    t = ticket(admit(admission, "/r"))
    assert gauges(admission)[0] == 1
    for _ in range(3):
        t.release()
    site, backends, rules, pairs = gauges(admission)
    assert site == 0 and set(backends) == {0} and set(rules) == {0} and set(pairs) == {0}


def test_reroute_moves_the_backend_slot() -> None:
    admission, clock, _ = build(config(backend("a", 5), backend("b", 5), backend("c", 1)))
    ticket(admit(admission)).release()  # advance round robin: next choice is b
    c_holder = None
    t = ticket(admit(admission))
    assert t.backend.name == "b"
    c_holder = ticket(admit(admission))
    assert c_holder.backend.name == "c"  # c is now full
    t.backend.health.mark_failure(clock(), 5.0)
    assert t.reroute(clock())
    assert t.backend.name == "a"
    assert gauges(admission)[1] == [1, 0, 1]
    assert not t.reroute(clock())  # b tried (and down), c full
    assert t.backend.name == "a"
    t.release()
    assert not t.reroute(clock())
    assert gauges(admission)[1] == [0, 0, 1]
    assert gauges(admission)[0] == 1


def test_bypass_reroute_may_use_a_full_backend() -> None:
    cfg = config(backend("a", 1), backend("b", 1), rules=(rule("s", "/s", bypass=True),))
    admission, clock, _ = build(cfg)
    ticket(admit(admission, "/"))  # a full
    t = ticket(admit(admission, "/s"))
    assert t.backend.name == "b"
    assert t.reroute(clock())
    assert t.backend.name == "a"


def test_bad_share() -> None:
    with pytest.raises(ValueError):
        build(config(), share=(2, 2))
