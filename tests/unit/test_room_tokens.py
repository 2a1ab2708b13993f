"""Place and pass tokens: round trips, forgery of every bit, expiry, skew, rooms, rotation."""

from __future__ import annotations

import base64

import pytest

from guard.core.room_token import (
    BAD_MAC,
    EXPIRED,
    FLAG_DIRECT,
    FUTURE,
    MALFORMED,
    OTHER_EVENT,
    OTHER_ROOM,
    TOKEN_CHARS,
    U32_MAX,
    U64_MAX,
    UNKNOWN_KEY,
    KeyRing,
    Pass,
    Place,
    RoomTokens,
)

SECRET_1 = bytes(range(32))
SECRET_2 = bytes(range(100, 140))
WALL = 1_800_000_000.0
HOLD = 120.0
IDLE = 300.0


def ring(*kids: int, active: int | None = None) -> KeyRing:
    secrets = {1: SECRET_1, 2: SECRET_2, 3: b"x" * 32}
    return KeyRing({kid: secrets[kid] for kid in kids}, kids[-1] if active is None else active)


def tokens(
    keys: KeyRing | None = None, room: str = "sale", event: str = "e1", epoch: int = 0
) -> RoomTokens:
    return RoomTokens(room, event, epoch, keys or ring(1), max_skew=30.0)


def place(number: int = 42, seen: float = WALL, return_at: int = 0) -> Place:
    return Place(number, int(WALL), int(seen), return_at)


def raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token))


def encode(data: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(data)).decode().rstrip("=")


def test_place_round_trips_at_the_field_limits() -> None:
    t = tokens()
    for p in (place(), Place(U64_MAX, U32_MAX, U32_MAX, U32_MAX, 255), Place(1, 0, 0)):
        token = t.sign_place(p)
        assert len(token) == TOKEN_CHARS
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        got = t.read_place(token, float(p.seen), HOLD)
        assert got == Place(p.number, p.issued_at, p.seen, p.return_at, p.flags, kid=1)


def test_pass_round_trips() -> None:
    t = tokens()
    p = Pass(7, int(WALL), int(WALL), int(WALL) + 1800, FLAG_DIRECT)
    token = t.sign_pass(p)
    assert len(token) == TOKEN_CHARS
    assert t.read_pass(token, WALL + 10, IDLE) == Pass(7, p.issued_at, p.seen, p.expires_at, 1, 1)


def expected_reason(byte: int) -> str:
    if byte in (0, 1):  # version, kind
        return MALFORMED
    if byte == 2:  # key id: no other key in the ring
        return UNKNOWN_KEY
    return BAD_MAC


def test_every_single_bit_flip_is_refused() -> None:
    t = tokens()
    good = raw(t.sign_place(place()))
    for byte in range(len(good)):
        for bit in range(8):
            forged = bytearray(good)
            forged[byte] ^= 1 << bit
            assert t.read_place(encode(forged), WALL, HOLD) == expected_reason(byte), (byte, bit)


def test_edited_fields_with_a_guessed_mac_are_bad_mac() -> None:
    t = tokens()
    good = raw(t.sign_place(place(number=1000)))
    forged = bytearray(good)
    forged[12:20] = (1).to_bytes(8, "big")  # move to the front of the line
    assert t.read_place(encode(forged), WALL, HOLD) == BAD_MAC
    forged[24:28] = (U32_MAX).to_bytes(4, "big")  # hold for ever
    assert t.read_place(encode(forged), WALL, HOLD) == BAD_MAC


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1],
        lambda s: s[:40],
        lambda s: s + "A",
        lambda s: s + "AAAA",
        lambda s: "",
        lambda s: "!" + s[1:],
        lambda s: "+" + s[1:],
        lambda s: "/" + s[1:],
        lambda s: "=" + s[1:],
        lambda s: s[:-2] + "==",
        lambda s: "é" + s[1:],
        lambda s: " " * 64,
    ],
)
def test_truncated_extended_and_non_base64_are_malformed(mangle: object) -> None:
    t = tokens()
    token = t.sign_place(place())
    assert callable(mangle)
    assert t.read_place(mangle(token), WALL, HOLD) == MALFORMED


def test_a_place_is_not_a_pass_and_back() -> None:
    t = tokens()
    assert t.read_pass(t.sign_place(place()), WALL, IDLE) == MALFORMED
    p = Pass(7, int(WALL), int(WALL), int(WALL) + 60)
    assert t.read_place(t.sign_pass(p), WALL, HOLD) == MALFORMED


def test_place_expires_after_the_hold_unless_held_for_a_return() -> None:
    t = tokens()
    token = t.sign_place(place(seen=WALL))
    assert isinstance(t.read_place(token, WALL + HOLD, HOLD), Place)
    assert t.read_place(token, WALL + HOLD + 1, HOLD) == EXPIRED
    held = t.sign_place(place(seen=WALL, return_at=int(WALL) + 3600))
    assert isinstance(t.read_place(held, WALL + 3600, HOLD), Place)
    assert t.read_place(held, WALL + 3601, HOLD) == EXPIRED


def test_pass_expires_at_max_age_and_when_idle() -> None:
    t = tokens()
    token = t.sign_pass(Pass(7, int(WALL), int(WALL), int(WALL) + 1800))
    assert isinstance(t.read_pass(token, WALL + IDLE, IDLE), Pass)
    assert t.read_pass(token, WALL + IDLE + 1, IDLE) == EXPIRED
    assert t.read_pass(token, WALL + 1800, 3600.0) == EXPIRED
    assert isinstance(t.read_pass(token, WALL + 1799, 3600.0), Pass)


def test_clock_skew_tolerance() -> None:
    t = tokens()
    ahead_29 = t.sign_place(place(seen=WALL + 29))
    ahead_31 = t.sign_place(Place(1, int(WALL) + 31, int(WALL) + 31))
    assert isinstance(t.read_place(ahead_29, WALL, HOLD), Place)
    assert t.read_place(ahead_31, WALL, HOLD) == FUTURE
    pass_ahead = t.sign_pass(Pass(1, int(WALL) + 31, int(WALL) + 31, int(WALL) + 999))
    assert t.read_pass(pass_ahead, WALL, IDLE) == FUTURE


def test_other_room_and_other_event() -> None:
    keys = ring(1)
    token = tokens(keys, room="sale").sign_place(place())
    assert tokens(keys, room="other").read_place(token, WALL, HOLD) == OTHER_ROOM
    assert tokens(keys, event="e2").read_place(token, WALL, HOLD) == OTHER_EVENT
    assert tokens(keys, epoch=1).read_place(token, WALL, HOLD) == OTHER_EVENT
    a_pass = tokens(keys, room="sale").sign_pass(Pass(1, int(WALL), int(WALL), int(WALL) + 60))
    assert tokens(keys, room="other").read_pass(a_pass, WALL, IDLE) == OTHER_ROOM


def test_key_rotation() -> None:
    old = tokens(ring(1)).sign_place(place())
    rotated = tokens(ring(1, 2))
    assert isinstance(got := rotated.read_place(old, WALL, HOLD), Place) and got.kid == 1
    new = rotated.sign_place(place())
    assert isinstance(got := rotated.read_place(new, WALL, HOLD), Place) and got.kid == 2
    dropped = tokens(ring(2))
    assert dropped.read_place(old, WALL, HOLD) == UNKNOWN_KEY
    assert isinstance(dropped.read_place(new, WALL, HOLD), Place)


def test_a_token_signed_by_a_different_secret_under_the_same_kid_is_bad_mac() -> None:
    mine = tokens(KeyRing({1: SECRET_1}, 1))
    theirs = tokens(KeyRing({1: SECRET_2}, 1))
    assert mine.read_place(theirs.sign_place(place()), WALL, HOLD) == BAD_MAC


def test_key_ring_validation() -> None:
    with pytest.raises(ValueError, match="active"):
        KeyRing({1: SECRET_1}, 2)
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing({1: b"short"}, 1)
    with pytest.raises(ValueError, match="0-255"):
        KeyRing({256: SECRET_1}, 256)
