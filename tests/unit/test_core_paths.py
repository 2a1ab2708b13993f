"""Canonical paths: every encoding trick resolves to what the WAS would route, or 400."""

from __future__ import annotations

import random

import pytest

from guard.core import BadPath, CanonicalTarget, canonicalize
from guard.core.paths import _canonicalize

CANONICAL = [
    # (target, path, forward)
    ("/", "/", "/"),
    ("/a/b?x=1&y=%2F", "/a/b", "/a/b?x=1&y=%2F"),  # the query is forwarded as received
    ("/event/%2e%2e/admin", "/admin", "/admin"),
    ("/event/%2E%2E/admin", "/admin", "/admin"),
    ("/%65vent/x", "/event/x", "/event/x"),
    ("//event", "/event", "/event"),
    ("/a//b///c", "/a/b/c", "/a/b/c"),
    ("/event/..;/admin", "/admin", "/admin"),
    ("/event;x=1/..;y/admin", "/admin", "/admin"),
    ("/a;p/b;q=1", "/a/b", "/a/b"),
    ("/shop/cart.jsp;jsessionid=AB12?x=1", "/shop/cart.jsp", "/shop/cart.jsp;jsessionid=AB12?x=1"),
    ("/shop/cart.jsp;a=1;jsessionid=AB12", "/shop/cart.jsp", "/shop/cart.jsp;jsessionid=AB12"),
    ("/shop;jsessionid=X/cart", "/shop/cart", "/shop/cart"),  # only the last segment's
    ("/shop/;jsessionid=X", "/shop/", "/shop/;jsessionid=X"),
    ("/%252e%252e/admin", "/%252e%252e/admin", "/%252e%252e/admin"),  # double encoding stays
    ("/%c0%ae%c0%ae/admin", "/%C0%AE%C0%AE/admin", "/%C0%AE%C0%AE/admin"),  # overlong UTF-8
    ("/a%3bb", "/a%3Bb", "/a%3Bb"),  # an encoded ';' is data, not a parameter
    ("/%7e%41%2d%5f", "/~A-_", "/~A-_"),
    ("/caf%C3%A9", "/caf%C3%A9", "/caf%C3%A9"),
    ("/a/b/", "/a/b/", "/a/b/"),
    ("/x/.", "/x/", "/x/"),
    ("/x/..", "/", "/"),
    ("/x/%2e", "/x/", "/x/"),
    ("/x/./y", "/x/y", "/x/y"),
    ("/x/y/../z/", "/x/z/", "/x/z/"),
    ("/.", "/", "/"),
    ("/.hidden/.../x", "/.hidden/.../x", "/.hidden/.../x"),
    ("/Event/A", "/Event/A", "/Event/A"),  # case-sensitive
    ("/index.html", "/index.html", "/index.html"),
    ("http://example.com:8080/a/../b?q=1", "/b", "/b?q=1"),
    ("HTTPS://example.com", "/", "/"),
    ("http://example.com?x", "/", "/?x"),
    ("http://h/event/%2e%2e/admin", "/admin", "/admin"),
]


@pytest.mark.parametrize(("target", "path", "forward"), CANONICAL)
def test_canonical(target: str, path: str, forward: str) -> None:
    assert canonicalize(target) == CanonicalTarget(path, forward)


REFUSED = [
    "/event/..%2fadmin",
    "/event/..%2Fadmin",
    "/a%5cb",
    "/a%5Cb",
    "/a%00b",
    "/a\\b",
    "/event/..\\admin",
    "/a#frag",
    "/a?x#frag",
    "/caf\xe9",
    "/a?caf\xe9",
    "/..",
    "/a/../..",
    "/%2e%2e/x",
    "/..;/x",
    "/a%",
    "/a%2",
    "/a%g1",
    "*",
    "a/b",
    "",
    "http:///x",
    "ftp://h/x",
]


@pytest.mark.parametrize("target", REFUSED)
def test_refused(target: str) -> None:
    with pytest.raises(BadPath) as info:
        canonicalize(target)
    assert info.value.reason


def test_plain_targets_take_the_fast_path_unchanged() -> None:
    result = canonicalize("/shop/item?id=7")
    assert result.path == "/shop/item"
    assert result.forward == "/shop/item?id=7"


def test_fast_path_agrees_with_full_path() -> None:
    rng = random.Random(7)
    alphabet = "ab.-_~/"
    for _ in range(3000):
        target = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.3:
            target += "?q=" + "".join(rng.choice("x.%/") for _ in range(3))
        try:
            full: CanonicalTarget | None = _canonicalize(target)
        except BadPath:
            full = None
        try:
            fast: CanonicalTarget | None = canonicalize(target)
        except BadPath:
            fast = None
        assert fast == full, target


def test_canonical_form_is_a_fixed_point() -> None:
    for target, path, _ in CANONICAL:
        assert canonicalize(path).path == path, target
