"""Session affinity (sticky routing) as Tomcat fleets need it: a session id ending in
``.<route>`` (mod_jk's jvmRoute) goes back to the backend with that ``route``; ceilings
still rule; a down backend's sessions go elsewhere and are counted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from guard.config import ConfigError, load_config
from tests.support.faults import metric
from tests.support.servers import (
    Guard,
    StartGuard,
    StartWas,
    Was,
    read_access_log,
    write_config,
)

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
DEAD = "http://127.0.0.1:9"  # nothing listens: every connect is refused


def routed(*rows: tuple[str, str, int, str], top: str = "") -> str:
    """backends with routes: (name, url, max_active, extra keys)."""
    lines = [f"  - {{name: {n}, url: '{u}', max_active: {m}{x}}}\n" for n, u, m, x in rows]
    return top + "backends:\n" + "".join(lines)


def pair(was1: Was, was2: Was, cap1: int = 5, extra1: str = "", top: str = "") -> str:
    return routed(
        ("was-1", was1.url, cap1, ", route: jvm1" + extra1),
        ("was-2", was2.url, 5, ", route: jvm2"),
        top=top,
    )


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())  # cookies sent by hand


async def served_by(s: aiohttp.ClientSession, guard: Guard, path: str = "/x", **kw: Any) -> str:
    async with s.get(f"{guard.url}{path}", headers={**JSON, **kw}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["name"])


async def test_session_cookie_routes_to_its_backend(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    guard = await start_guard(pair(was1, was2))
    async with session() as s:
        assert {await served_by(s, guard) for _ in range(4)} == {"was-1", "was-2"}  # no session
        one = [await served_by(s, guard, Cookie="JSESSIONID=A1B2.jvm1") for _ in range(6)]
        assert one == ["was-1"] * 6
        two = [await served_by(s, guard, Cookie="x=1; JSESSIONID=C3.jvm2; y=2") for _ in range(6)]
        assert two == ["was-2"] * 6
        # URL-rewritten sessions (cookies off): the ;jsessionid= path parameter, any case
        assert await served_by(s, guard, "/cart.jsp;jsessionid=Z9.jvm2") == "was-2"
        assert await served_by(s, guard, "/cart.jsp;JSESSIONID=Z9.jvm1") == "was-1"
        # an unknown route or none at all: the usual choice, never an error
        assert await served_by(s, guard, Cookie="JSESSIONID=A1B2.jvm9") in ("was-1", "was-2")
        assert await served_by(s, guard, Cookie="JSESSIONID=A1B2") in ("was-1", "was-2")


async def test_full_sticky_backend_refuses_unless_prefer(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    cookie = {"Cookie": "JSESSIONID=A1B2.jvm1"}
    strict = await start_guard(pair(was1, was2, cap1=1))
    async with session() as s:
        held = asyncio.ensure_future(s.get(f"{strict.url}/__was/hold", headers=cookie))
        await was1.wait_active(1)
        async with s.get(f"{strict.url}/x", headers={**BROWSER, **cookie}) as r:
            assert r.status == 503
            assert "please wait" in await r.text()  # the waiting page: the session is kept
        assert await served_by(s, strict) == "was-2"  # no session: was-2 has room
        await was1.release()
        (await held).release()
    counts = {r["name"]: r["counts"] for r in (await strict.status())["rules"]}
    assert counts["default"]["over_capacity"] == 1
    await strict.runtime.stop()

    prefer = await start_guard(pair(was1, was2, cap1=1, extra1=", sticky: prefer"))
    async with session() as s:
        held = asyncio.ensure_future(s.get(f"{prefer.url}/__was/hold", headers=cookie))
        await was1.wait_active(1)
        assert await served_by(s, prefer, **cookie) == "was-2"  # prefer: another may take it
        await was1.release()
        (await held).release()
    assert (await was1.stats())["max_seen_active"] == 1


async def test_down_or_draining_sticky_backend_goes_elsewhere_and_is_counted(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was2 = await start_was("was-2")
    guard = await start_guard(
        routed(
            ("was-1", DEAD, 5, ", route: jvm1, cooldown: 1m"),
            ("was-2", was2.url, 5, ", route: jvm2"),
        )
    )
    async with session() as s:
        got = [await served_by(s, guard, Cookie="JSESSIONID=A1B2.jvm1") for _ in range(3)]
    assert got == ["was-2"] * 3
    text = await guard.metrics()
    assert metric(text, "guard_sticky_rerouted_total", backend="was-1") == 3

    was1 = await start_was("was-1")
    draining = await start_guard(pair(was1, was2, extra1=", drain: true"))
    async with session() as s:
        assert await served_by(s, draining, Cookie="JSESSIONID=A1B2.jvm1") == "was-2"
    text = await draining.metrics()
    assert metric(text, "guard_sticky_rerouted_total", backend="was-1") == 1
    assert (await was1.stats())["served"] == 0


async def test_renamed_session_parameter_is_kept_and_routes(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    top = "session_params: [jsessionid, SHOPSID]\nsession_cookies: [SHOPSID]\n"
    guard = await start_guard(pair(was1, was2, top=top))
    async with session() as s:
        async with s.get(f"{guard.url}/shop/cart;SHOPSID=XYZ.jvm2?x=1", headers=JSON) as r:
            body = await r.json()
        assert body["raw_path"] == "/shop/cart;SHOPSID=XYZ.jvm2?x=1"  # kept, as direct
        assert body["name"] == "was-2"
        assert await served_by(s, guard, "/a;b=1;shopsid=Q.jvm1") == "was-1"
        assert await served_by(s, guard, Cookie="SHOPSID=Q.jvm2") == "was-2"
    paths = [x["path"] for x in read_access_log(guard)]
    assert paths[0] == "/shop/cart"  # rules and the log see the canonical path


async def test_guard_inserted_affinity_cookie(start_was: StartWas, start_guard: StartGuard) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    guard = await start_guard(pair(was1, was2, top="sticky_cookie: {name: GUARDROUTE}\n"))
    async with session() as s:
        async with s.get(f"{guard.url}/x", headers=JSON) as r:
            first = (await r.json())["name"]
            set_cookie = r.headers.get("Set-Cookie", "")
            assert "private" in r.headers.get("Cache-Control", "")  # caches must not share it
        route = {"was-1": "jvm1", "was-2": "jvm2"}[first]
        assert set_cookie.startswith(f"GUARDROUTE={route};")
        assert "HttpOnly" in set_cookie and "Path=/" in set_cookie
        for _ in range(4):
            async with s.get(
                f"{guard.url}/x", headers={**JSON, "Cookie": f"GUARDROUTE={route}"}
            ) as r:
                assert (await r.json())["name"] == first
                assert "Set-Cookie" not in r.headers  # the client has the right one already
        async with s.get(
            f"{guard.url}/__was/echo-headers", headers={"Cookie": "GUARDROUTE=jvm2"}
        ) as r:
            seen = dict((k.lower(), v) for k, v in (await r.json())["headers"])
        assert "guardroute" not in seen.get("cookie", "").lower()  # indirect: not forwarded


def test_affinity_settings_are_validated(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "waiting_page: waiting.html\n"
        "session_params: [jsessionid, 'a=b']\n"
        "sticky_cookie: {name: 'bad name'}\n"
        "backends:\n"
        "  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 5, route: jvm1}\n"
        "  - {name: was-2, url: 'http://127.0.0.1:8082', max_active: 5, route: jvm1}\n"
        "  - {name: was-3, url: 'http://127.0.0.1:8083', max_active: 5, route: a.b}\n"
        "  - {name: was-4, url: 'http://127.0.0.1:8084', max_active: 5, sticky: always}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [(p.line, p.key) for p in info.value.problems]
    assert found == [
        (2, "session_params[1]"),
        (3, "sticky_cookie.name"),
        (7, "backends[2].route"),
        (8, "backends[3].sticky"),
    ]
    fixed = path.read_text().replace("'a=b'", "shopsid").replace("'bad name'", "GUARDROUTE")
    path.write_text(fixed.replace("route: a.b", "route: jvm3").replace("always", "prefer"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.key) == (6, "backends[1].route")
    assert 'duplicate route "jvm1"' in problem.message


def test_affinity_cookie_without_routes_is_a_warning(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "waiting_page: waiting.html\n"
        "sticky_cookie: {name: GUARDROUTE}\n"
        "backends:\n  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 5}\n",
    )
    (warning,) = load_config(path).warnings
    assert (warning.line, warning.key) == (2, "sticky_cookie")
    assert "no backend has a route" in warning.message
