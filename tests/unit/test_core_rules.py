"""Rule patterns and the first-match-wins table (and that indexing changes no answer)."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest

from guard.core import compile_pattern
from tests.unit.test_core_fakes import FakeRule, build, config, rule


def names(rules: tuple[FakeRule, ...], probes: list[tuple[str, str]]) -> list[str]:
    admission, _, _ = build(config(rules=rules))
    return [admission.match(method, path).name for method, path in probes]


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("/x/**", ["/x", "/x/", "/x/a", "/x/a/b/"], ["/xy", "/", "/y/x"]),
        ("/**", ["/", "/a", "/a/b"], []),
        ("/shop/*.jsp", ["/shop/a.jsp", "/shop/.jsp"], ["/shop/a/b.jsp", "/shop/a.jspx", "/shop"]),
        ("/**/*.jsp", ["/a.jsp", "/a/b/c.jsp"], ["/a.jsp/b", "/a.html"]),
        ("/a/**/b", ["/a/b", "/a/x/y/b"], ["/a/xb", "/a/b/", "/a"]),
        ("/x/*", ["/x/", "/x/a"], ["/x", "/x/a/b"]),
        ("/exact", ["/exact"], ["/exact/", "/exactly", "/Exact"]),
        ("/a.b/[x]/(y)", ["/a.b/[x]/(y)"], ["/aXb/[x]/(y)", "/a.b/x/(y)"]),  # no regex leaks
        ("/api*/v1", ["/api/v1", "/api2/v1"], ["/ap/v1"]),
    ],
)
def test_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    matches = compile_pattern(pattern)
    assert [p for p in yes if not matches(p)] == []
    assert [p for p in no if matches(p)] == []


def test_pattern_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        compile_pattern("*.jsp")


def test_first_match_wins_and_default_last() -> None:
    rules = (
        rule("jsp", "/**/*.jsp"),
        rule("event", "/event/**"),
        rule("event-post", "/event/**", methods=("POST",)),
        rule("admin", "/admin/**", block=True),
    )
    probes = [
        ("GET", "/event/a.jsp"),
        ("GET", "/event/x"),
        ("GET", "/admin"),
        ("GET", "/other"),
        ("GET", "/"),
    ]
    assert names(rules, probes) == ["jsp", "event", "admin", "default", "default"]


def test_methods_filter() -> None:
    rules = (rule("post", "/event/**", methods=("POST",)), rule("rest", "/event/**"))
    probes = [("POST", "/event/1"), ("GET", "/event/1"), ("HEAD", "/event/1")]
    assert names(rules, probes) == ["post", "rest", "rest"]


def test_wildcard_first_rules_keep_their_order_among_literal_ones() -> None:
    rules = (
        rule("shop-cart", "/shop/cart"),
        rule("any-cart", "/*/cart"),
        rule("shop", "/shop/**"),
        rule("all", "/**"),
    )
    probes = [("GET", "/shop/cart"), ("GET", "/x/cart"), ("GET", "/shop/y"), ("GET", "/z")]
    assert names(rules, probes) == ["shop-cart", "any-cart", "shop", "all"]


# --- 500 rules: the index gives exactly the answers of a naive linear scan ---

WORDS = ["a", "b", "c", "event", "shop", "api", "x.jsp", "y.do", ""]
PATTERN_SEGMENTS = ["a", "b", "c", "event", "shop", "api", "*", "**", "*.jsp", "x*", "*.do"]


def naive_segments_match(pattern: list[str], path: list[str]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(naive_segments_match(rest, path[k:]) for k in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and naive_segments_match(rest, path[1:])


def naive_match(rules: tuple[FakeRule, ...], method: str, path: str) -> str:
    for r in rules:
        if r.methods is not None and method not in r.methods:
            continue
        if naive_segments_match(r.path.split("/")[1:], path.split("/")[1:]):
            return r.name
    return "default"


def random_rules(rng: random.Random, count: int) -> tuple[FakeRule, ...]:
    rules = []
    for i in range(count):
        first = rng.choice(PATTERN_SEGMENTS if rng.random() < 0.05 else [f"p{i % 60}", "event"])
        segs = [first] + [rng.choice(PATTERN_SEGMENTS) for _ in range(rng.randint(0, 3))]
        methods = rng.choice([None, None, ("GET",), ("POST", "PUT")])
        rules.append(rule(f"r{i}", "/" + "/".join(segs), methods=methods))
    return tuple(rules)


def random_path(rng: random.Random) -> str:
    first = rng.choice([f"p{rng.randrange(70)}", *WORDS[:-1]])
    segs = [first] + [rng.choice(WORDS[:-1]) for _ in range(rng.randint(0, 4))]
    trailing = "/" if rng.random() < 0.2 else ""  # canonical paths: only a trailing '' segment
    return "/" + "/".join(segs) + trailing


def test_500_rules_agree_with_a_linear_scan() -> None:
    rng = random.Random(2024)
    rules = random_rules(rng, 500)
    admission, _, _ = build(config(rules=rules))
    hits = set()
    for _ in range(5000):
        method, path = rng.choice(["GET", "POST", "DELETE"]), random_path(rng)
        expected = naive_match(rules, method, path)
        assert admission.match(method, path).name == expected, (method, path)
        hits.add(expected)
    assert len(hits) > 30  # the probe set really exercises many rules
