"""``reserve: N`` on a rule: N slots of the site ceiling and of every backend ceiling that
only that rule may take; every other rule sees those ceilings lowered by the reserve the
rule has not used yet."""

from __future__ import annotations

from guard.core import Admission, Refusal, Ticket
from tests.unit.test_core_fakes import backend, build, config, rule


def admit(admission: Admission, path: str) -> Ticket | Refusal | None:
    return admission.admit(admission.match("GET", path), "10.0.0.1")


def admitted(admission: Admission, path: str, n: int) -> list[Ticket]:
    out = []
    for _ in range(n):
        result = admit(admission, path)
        assert isinstance(result, Ticket), (path, result)
        out.append(result)
    return out


def refused(admission: Admission, path: str) -> Refusal:
    result = admit(admission, path)
    assert isinstance(result, Refusal), (path, result)
    return result


RULES = (rule("main", "/main.jsp", reserve=2), rule("event", "/event/**"))


def test_site_reserve_keeps_slots_for_its_rule() -> None:
    admission, _, _ = build(config(backend("a", 100), rules=RULES, max_active=10))
    admitted(admission, "/event/1", 8)  # the others see 10 - 2
    assert refused(admission, "/event/1").outcome == "over_capacity"
    assert refused(admission, "/other").outcome == "over_capacity"  # default too
    admitted(admission, "/main.jsp", 2)  # the home page still works
    assert refused(admission, "/main.jsp").rule.name == "main"  # site full now


def test_backend_reserve_keeps_slots_on_every_backend() -> None:
    admission, _, _ = build(config(backend("a", 3), backend("b", 3), rules=RULES))
    held = admitted(admission, "/event/1", 2)  # each backend: 3 - 2 = 1 for the others
    assert sorted(t.backend.name for t in held) == ["a", "b"]
    assert refused(admission, "/event/1").outcome == "over_capacity"
    main = admitted(admission, "/main.jsp", 4)
    assert sorted(t.backend.name for t in main) == ["a", "a", "b", "b"]
    assert refused(admission, "/main.jsp").outcome == "over_capacity"


def test_a_used_reserve_is_not_kept_twice() -> None:
    admission, _, _ = build(config(backend("a", 100), rules=RULES, max_active=10))
    main = admitted(admission, "/main.jsp", 3)  # 2 from its reserve, 1 from the shared 8
    admitted(admission, "/event/1", 7)
    assert refused(admission, "/event/1").outcome == "over_capacity"
    main[0].release()  # main back inside its reserve: the shared slot it used is free
    admitted(admission, "/event/1", 1)
    assert refused(admission, "/event/1").outcome == "over_capacity"
    main[1].release()  # main at 1: one reserved slot is unused again, kept for main
    assert refused(admission, "/event/1").outcome == "over_capacity"
    admitted(admission, "/main.jsp", 1)


def test_reserves_add_up_per_ceiling() -> None:
    rules = (rule("main", "/main", reserve=2), rule("login", "/login", reserve=3))
    admission, _, _ = build(config(backend("a", 100), rules=rules, max_active=10))
    admitted(admission, "/x", 5)  # 10 - 2 - 3
    assert refused(admission, "/x").outcome == "over_capacity"
    admitted(admission, "/main", 2)
    assert refused(admission, "/main").outcome == "over_capacity"  # login's 3 stay free
    admitted(admission, "/login", 3)


def test_no_reserve_means_the_full_ceiling() -> None:
    admission, _, _ = build(config(backend("a", 4), rules=(rule("event", "/event/**"),)))
    admitted(admission, "/event/1", 4)


def test_reserve_is_split_across_workers() -> None:
    cfg = config(backend("a", 100), rules=RULES, max_active=10)
    total = 0
    for worker in range(2):
        admission, _, _ = build(cfg, share=(worker, 2))
        total += len(admitted(admission, "/event/1", 4))  # 5 - 1 each
        assert refused(admission, "/event/1").outcome == "over_capacity"
    assert total == 8
