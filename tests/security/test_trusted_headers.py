"""Headers a WAS may trust never come from a client: X-Real-IP, True-Client-IP, the URL
overrides some frameworks honour (a known block-rule bypass), the method override and the
forwarded port/prefix are stripped by default (`strip_headers`, configurable). For an
absolute-form request-target the URI's authority wins over Host (RFC 9112 §3.2.2)."""

from __future__ import annotations

import json

from tests.support.rawhttp import exchange
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

TRUSTED = (
    "X-Real-IP",
    "True-Client-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
)


async def seen_headers(guard: Guard, head: bytes) -> list[tuple[str, str]]:
    """Headers the WAS received for the request head `head` (without the final CRLF)."""
    res = await exchange(guard.port, head + b"\r\n")
    assert res.status == 200, (res.status, res.body[:200])
    return [(k.lower(), v) for k, v in json.loads(res.body)["headers"]]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name.lower()]


async def test_headers_a_was_may_trust_are_stripped_by_default(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    spoofed = b"".join(
        b"%s: %s\r\n" % (name.encode(), value)
        for name in TRUSTED
        for value in (b"/admin/secret", b"6.6.6.6")
    )
    mixed_case = b"x-original-url: /admin\r\nX-REAL-IP: 6.6.6.6\r\n"
    head = b"GET /__was/echo-headers HTTP/1.1\r\nHost: shop\r\nX-Keep: 1\r\n"
    headers = await seen_headers(guard, head + spoofed + mixed_case)
    leaked = [(k, v) for k, v in headers if k in {n.lower() for n in TRUSTED}]
    assert leaked == [], leaked
    assert values(headers, "x-keep") == ["1"]
    await guard.wait_idle()


async def test_strip_headers_is_configurable(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + "strip_headers: [X-Internal-User]\n")
    headers = await seen_headers(
        guard,
        b"GET /__was/echo-headers HTTP/1.1\r\nHost: shop\r\n"
        b"X-Internal-User: root\r\nX-Real-IP: 6.6.6.6\r\n",
    )
    assert values(headers, "x-internal-user") == []
    assert values(headers, "x-real-ip") == ["6.6.6.6"]  # the list replaces the default


async def test_absolute_form_authority_wins_over_host(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    headers = await seen_headers(
        guard,
        b"GET http://shop.example:8080/__was/echo-headers HTTP/1.1\r\nHost: evil.example\r\n",
    )
    assert values(headers, "host") == ["shop.example:8080"]
    assert values(headers, "x-forwarded-host") == ["shop.example:8080"]
    headers = await seen_headers(  # HTTP/1.0 without Host: the authority is the Host
        guard, b"GET HTTP://shop.example/__was/echo-headers HTTP/1.0\r\n"
    )
    assert values(headers, "host") == ["shop.example"]
    await guard.wait_idle()


async def test_an_absolute_form_authority_is_validated_like_host(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    for target in (b"http://a,b/x", b"http://user@shop/x", b"http://sh op/x"):
        res = await exchange(guard.port, b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert res.status == 400, (target, res.status)
    assert (await was.stats())["served"] == 0
    await guard.wait_idle()
