"""The waiting room's hot path, restructured for speed, still says exactly what it said:
the MAC is HMAC-SHA256, tokens read the same as text or bytes, queue answers and cookies
are byte for byte what the generic builders make, header tokens are trimmed as before, and
a poll's query finds its room however it is spelled."""

from __future__ import annotations

import hmac
import os

import pytest

from guard.core import FakeClock
from guard.core.room_control import RoomController
from guard.core.room_params import RoomParams
from guard.core.room_schedule import ALWAYS
from guard.core.room_store import MemoryRoomStore
from guard.core.room_token import MALFORMED, KeyRing, Pass, Place, RoomTokens
from guard.proxy.headers import RequestMeta, simple_response
from guard.proxy.room_gate import _polled_room
from guard.proxy.room_pages import (
    CSP,
    HTML_TYPE,
    JSON_TYPE,
    PRIVATE,
    QUEUE_MARK,
    cookie,
    queue_answer,
)
from guard.proxy.room_presented import presented
from guard.proxy.room_state import Room, RoomTable
from tests.unit.test_core_fakes import backend, build, config

WALL = 1_800_000_000.0


def ring(kid: int = 1, secret: bytes = b"k" * 32) -> KeyRing:
    return KeyRing({kid: secret}, kid)


@pytest.mark.parametrize("size", [32, 64, 65, 200])
def test_the_mac_is_hmac_sha256_of_the_subkey_whatever_the_secret(size: int) -> None:
    keys = KeyRing({7: os.urandom(size), 9: os.urandom(size)}, 7)
    for kid in (7, 9):
        for body in (b"", os.urandom(32), os.urandom(100)):
            expected = hmac.digest(keys.subkeys[kid], body, "sha256")[:16]
            assert keys.mac(kid, body) == expected


def test_tokens_read_the_same_as_text_or_as_the_bytes_of_a_cookie() -> None:
    tokens = RoomTokens("sale", "default", 1, ring(), 30.0)
    place = Place(42, int(WALL), int(WALL), kid=1)
    raw = tokens.place_token(place)
    assert raw.decode("ascii") == tokens.sign_place(place)
    assert tokens.read_place(raw, WALL, 120.0) == tokens.read_place(raw.decode(), WALL, 120.0)
    assert tokens.read_place(raw, WALL, 120.0) == place
    a_pass = Pass(42, int(WALL), int(WALL), int(WALL) + 600, kid=1)
    assert tokens.read_pass(tokens.pass_token(a_pass), WALL, 300.0) == a_pass
    assert tokens.read_place(raw[:-1] + b"\xe9", WALL, 120.0) == MALFORMED
    assert tokens.read_place(raw[:-1].decode() + "é", WALL, 120.0) == MALFORMED


@pytest.mark.parametrize("status", [200, 429, 503])
@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize("head", [False, True])
def test_a_queue_answer_is_the_generic_response_byte_for_byte(
    status: int, html: bool, close: bool, head: bool
) -> None:
    extra = [(b"Set-Cookie", b"guard_place_sale=abc; Max-Age=600"), (b"X-Guard-Place", b"abc")]
    for refresh in (0, 1, 31, 63, 64, 1000):
        body = b'{"room":"sale"}'
        page = b"<html>queue</html>" if html else None
        retry = (b"Retry-After", str(refresh).encode())
        kind = HTML_TYPE if html else JSON_TYPE
        fixed = (
            [kind, PRIVATE, QUEUE_MARK, retry, CSP] if html else [kind, PRIVATE, QUEUE_MARK, retry]
        )
        payload = page if page is not None else body
        expected = simple_response(status, [*fixed, *extra], payload, close, head)
        assert queue_answer(status, (body, refresh), page, extra, close, head) == expected


@pytest.mark.parametrize("age", [-5, 0, 1, 600, 1023, 1024, 86_400])
@pytest.mark.parametrize("secure", [False, True])
def test_cookies_keep_their_spelling(age: int, secure: bool) -> None:
    flags = b"; Path=/; HttpOnly; SameSite=Lax" + (b"; Secure" if secure else b"")
    value = b"guard_pass_sale=tok; Max-Age=%d%s" % (max(0, age), flags)
    assert cookie(b"guard_pass_sale", b"tok", age, secure) == (b"Set-Cookie", value)


def a_room() -> Room:
    clock = FakeClock(100.0, wall_offset=WALL)
    params = RoomParams(1.0, place_hold=600.0)
    controller = RoomController(params, MemoryRoomStore(), ALWAYS, b"seed", clock())
    return Room("sale", controller, ring(), clock.wall)


def test_header_tokens_are_trimmed_as_text_was_and_never_reach_the_backend() -> None:
    room = a_room()
    meta = RequestMeta()
    meta.accept_html = True
    headers = [
        (b"Host", b"shop"),
        (b"X-GUARD-PLACE", b"\xa0place\x85"),  # str.strip() took these off latin-1 text
        (b"x-guard-pass", b"\tpass "),
        (b"Cookie", b"a=1; guard_place_sale=cookieplace"),
    ]
    meta.kept = list(headers)
    found = presented(room, headers, meta)
    assert found.place_token == b"cookieplace"  # the cookie came last
    assert found.pass_token == b"pass"
    assert found.header_mode
    assert meta.kept == [(b"Host", b"shop"), (b"Cookie", b"a=1; guard_place_sale=cookieplace")]
    only_header = presented(room, [(b"X-Guard-Place", b"\xa0place\x85")], RequestMeta())
    assert only_header.place_token == b"place"


def test_a_poll_finds_its_room_however_the_query_is_spelled() -> None:
    room = a_room()
    admission = build(config(backend("a")))[0]
    table = RoomTable([room], {}, admission)
    assert _polled_room(table, "/__guard/queue?room=sale") == (room, False)
    assert _polled_room(table, "/__guard/queue?room=sale&return=1") == (room, True)
    assert _polled_room(table, "/__guard/queue?return=1&room=sale") == (room, True)
    assert _polled_room(table, "/__guard/queue?room=sale&return=0") == (room, False)
    assert _polled_room(table, "/__guard/queue?room=sales") == (None, False)
    assert _polled_room(table, "/__guard/queue") == (None, False)
    assert _polled_room(None, "/__guard/queue?room=sale") == (None, False)
