"""Path tricks against an `/event/**` rule and an `/admin/**` block rule. Each request is
either counted by the rule a servlet container (Tomcat) would route it to -- and the WAS
receives exactly the canonical path that was matched -- or refused with 400 and never
forwarded. A block rule can never be walked around."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.support.rawhttp import exchange
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml

RULES = """
rules:
  - {name: admin, path: /admin/**, block: true}
  - {name: event, path: /event/**, max_active: 10}
"""


@dataclass(frozen=True)
class Route:
    rule: str  # the rule a Tomcat would route it to ("default": neither)
    forward: str  # exactly what the WAS must receive
    may_refuse: bool = False  # 400 is an acceptable answer too (Tomcat itself may 400)


BLOCKED = Route("admin", "")
REFUSED = Route("", "")

CASES: dict[str, tuple[str, Route]] = {
    # encoded slash / backslash / NUL: always 400
    "dotdot-%2f-to-admin": ("/event/..%2fadmin/x", REFUSED),
    "dotdot-%2F-to-event": ("/foo/..%2Fevent/a", REFUSED),
    "encoded-slash-in-segment": ("/event%2fa", REFUSED),
    "dotdot-%5c": ("/event/..%5cadmin/x", REFUSED),
    "backslash-dotdot": ("/event\\..\\admin/x", REFUSED),
    "backslash": ("/event/a\\b", REFUSED),
    "nul": ("/event/a%00.jsp", REFUSED),
    "above-root": ("/../admin/x", REFUSED),
    "encoded-above-root": ("/%2e%2e/admin/x", REFUSED),
    "fragment": ("/event/a#x", REFUSED),
    "non-ascii": ("/event/\xe9", REFUSED),
    # encoded dots are dot segments (unreserved characters are decoded)
    "%2e%2e-into-event": ("/x/%2e%2e/event/a", Route("event", "/event/a")),
    "%2e%2e-into-admin": ("/event/%2e%2e/admin/x", BLOCKED),
    "%2E%2e-mixed-case-into-admin": ("/event/a/%2E%2e/%2e%2E/admin/x", BLOCKED),
    "%2e-single": ("/%2e/admin/x", BLOCKED),
    "plain-dotdot-into-admin": ("/event/../admin/x", BLOCKED),
    "dot-segments-kept-slash": ("/event/a/./b/", Route("event", "/event/a/b/")),
    # encoded unreserved letters
    "%65vent": ("/%65vent/a", Route("event", "/event/a")),
    "%61dmin": ("/%61dmin/x", BLOCKED),
    "%41DMIN-is-another-path": ("/%41DMIN/x", Route("default", "/ADMIN/x")),
    # empty segments
    "//event": ("//event/a", Route("event", "/event/a")),
    "//admin//x": ("//admin//x", BLOCKED),
    # path parameters: stripped from every segment; jsessionid of the last one kept
    "jsessionid-last": ("/event/a;jsessionid=ABC123", Route("event", "/event/a;jsessionid=ABC123")),
    "jsessionid-middle": ("/event;jsessionid=ABC/a", Route("event", "/event/a")),
    "param-on-admin": ("/admin;jsessionid=x/secret", BLOCKED),
    "empty-param-on-admin": ("/admin;/x", BLOCKED),
    "dotdot-param-into-admin": ("/event/..;/admin/x", BLOCKED),
    "dotdot-param-into-event": ("/x/..;/event/a", Route("event", "/event/a")),
    "dotdot-param-value": ("/x/..;a=b/event/a", Route("event", "/event/a")),
    "encoded-semicolon-is-not-a-param": ("/admin%3b/x", Route("default", "/admin%3B/x")),
    # double encoding decodes once: a literal %2e segment is not a dot segment
    "double-encoded-dots": ("/x/%252e%252e/admin/x", Route("default", "/x/%252e%252e/admin/x")),
    "double-encoded-letter": ("/%2561dmin/x", Route("default", "/%2561dmin/x")),
    "double-encoded-slash": ("/event/..%252fadmin/x", Route("event", "/event/..%252fadmin/x")),
    # overlong UTF-8 for '.': never a dot segment (Tomcat answers 400 for invalid UTF-8)
    "overlong-2-byte": (
        "/x/%c0%ae%c0%ae/admin/x",
        Route("default", "/x/%C0%AE%C0%AE/admin/x", True),
    ),
    "overlong-in-event": (
        "/event/%c0%ae%c0%ae/admin/x",
        Route("event", "/event/%C0%AE%C0%AE/admin/x", True),
    ),
    "overlong-3-byte": (
        "/x/%e0%80%ae%e0%80%ae/admin",
        Route("default", "/x/%E0%80%AE%E0%80%AE/admin", True),
    ),
    "overlong-slash": ("/event/..%c0%afadmin/x", Route("event", "/event/..%C0%AFadmin/x", True)),
    # case-sensitive, like servlet mappings
    "upper-case": ("/ADMIN/x", Route("default", "/ADMIN/x")),
    "admin-root": ("/admin", BLOCKED),
    "admin-dot": ("/admin/.", BLOCKED),
    # the query is not part of the path
    "query-with-dotdot": ("/event/a?next=/../admin/x", Route("event", "/event/a?next=/../admin/x")),
    # absolute-form request-targets: routed by their path, forwarded in origin-form
    "absolute-event": ("http://shop.example/event/a", Route("event", "/event/a")),
    "absolute-upper-scheme": ("HTTP://shop.example/event/a", Route("event", "/event/a")),
    "absolute-https": ("https://shop.example:8443/event/a?q=1", Route("event", "/event/a?q=1")),
    "absolute-admin": ("http://shop.example/admin/x", BLOCKED),
    "absolute-dotdot-admin": ("http://shop.example/event/../admin/x", BLOCKED),
    "absolute-%2e%2e-admin": ("http://shop.example/event/%2e%2e/admin/x", BLOCKED),
    "absolute-no-path": ("http://shop.example", Route("default", "/")),
    "absolute-other-scheme": ("ftp://shop.example/event/a", REFUSED),
    "absolute-userinfo-trick": ("http://shop.example@evil/admin/x", BLOCKED),
}


async def counts(guard: Guard) -> dict[str, dict[str, int]]:
    """Non-zero outcome counts of every rule, from /status."""
    rules = (await guard.status())["rules"]
    return {r["name"]: {k: v for k, v in r["counts"].items() if v} for r in rules}


async def send(guard: Guard, target: str) -> tuple[int, bytes]:
    raw = f"GET {target} HTTP/1.1\r\nHost: shop.example\r\n\r\n".encode("latin-1")
    res = await exchange(guard.port, raw)
    return res.status, res.body


async def assert_not_forwarded(was: Was) -> None:
    stats = await was.stats()
    assert stats["served"] == 0 and stats["active"] == 0, stats


@pytest.mark.parametrize(("target", "route"), list(CASES.values()), ids=list(CASES))
async def test_path_trick(
    start_was: StartWas, start_guard: StartGuard, target: str, route: Route
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + RULES)
    status, body = await send(guard, target)
    after = await counts(guard)
    if route is REFUSED or (route.may_refuse and status == 400):
        assert status == 400, (status, body[:200])
        assert after == {"admin": {}, "event": {}, "default": {"bad_request": 1}}, after
        await assert_not_forwarded(was)
    elif route is BLOCKED:
        assert status == 403, (status, body[:200])
        assert after == {"admin": {"blocked": 1}, "event": {}, "default": {}}, after
        await assert_not_forwarded(was)
    else:
        assert status == 200, (status, body[:200])
        assert json.loads(body)["raw_path"] == route.forward
        expected = {"admin": {}, "event": {}, "default": {}, route.rule: {"admitted": 1}}
        assert after == expected, after
        assert (await was.stats())["served"] == 1
    await guard.wait_idle()


async def test_waiting_assets_prefix_cannot_reach_the_backend_or_climb_out(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """/__guard/static/ is served from memory: dot segments cannot climb out of it to a
    backend path, and a missing asset is guard's 404, not the WAS."""
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + RULES)
    status, _ = await send(guard, "/__guard/static/../../admin/x")
    assert status == 403  # canonicalised first: this is /admin/x, blocked
    status, _ = await send(guard, "/__guard/static/nope.js")
    assert status == 404
    await assert_not_forwarded(was)
    await guard.wait_idle()
