"""Signed, stateless room tokens: a **place** (a spot in line) and a **pass** (admitted).

Both are 48 bytes, big-endian, base64url without padding (exactly 64 characters, so no
padding and no stray trailing bits: one token has exactly one spelling):

    place: u8 version, u8 kind "Q", u8 kid, u8 flags, u32 room tag, u32 event tag,
           u64 number, u32 issued_at, u32 seen, u32 return_at (0 = none), MAC[16]
    pass:  u8 version, u8 kind "P", u8 kid, u8 flags, u32 room tag, u32 event tag,
           u64 pass_id, u32 issued_at, u32 seen, u32 expires_at, MAC[16]

MAC = HMAC-SHA256(subkey[kid], first 32 bytes)[:16], compared with hmac.compare_digest. The
MAC covers the room and event tags, so a token cannot be moved to another room or event by
editing it; the tags are checked after the MAC, so "other room" and "other event" are told
apart from forgery. Times are wall-clock u32 seconds: tokens outlive restarts and hosts.
Nothing here reads a clock: the caller passes ``wall``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any, Final

MALFORMED: Final = "malformed"
BAD_MAC: Final = "bad_mac"
UNKNOWN_KEY: Final = "unknown_key"
EXPIRED: Final = "expired"
OTHER_ROOM: Final = "other_room"
OTHER_EVENT: Final = "other_event"
FUTURE: Final = "future"
REPLAYED: Final = "replayed"
REASONS: Final = (
    MALFORMED,
    BAD_MAC,
    UNKNOWN_KEY,
    EXPIRED,
    OTHER_ROOM,
    OTHER_EVENT,
    FUTURE,
    REPLAYED,
)
"""Why a token was not accepted; fixed words, usable as a metric label."""

VERSION: Final = 1
KIND_PLACE: Final = 0x51  # "Q"
KIND_PASS: Final = 0x50  # "P"
FLAG_DIRECT: Final = 1
"""Pass flag: minted by straight-through entry, not by converting a waited place."""

TOKEN_CHARS: Final = 64
BODY_BYTES: Final = 32
MAC_BYTES: Final = 16
MIN_SECRET_BYTES: Final = 32
U32_MAX: Final = 0xFFFFFFFF
U64_MAX: Final = 0xFFFFFFFFFFFFFFFF

_LAYOUT: Final = struct.Struct("!BBBBIIQIII")
_SUBKEY_LABEL: Final = b"guard room token v1"
# base64url -> standard alphabet; "+" and "/" become "!" so strict decoding rejects them.
_FROM_URLSAFE: Final = bytes.maketrans(b"-_+/", b"+/!!")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_SHA256_BLOCK: Final = 64
_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


def room_tag(room: str) -> int:
    """A room's u32 tag in its tokens."""
    return int.from_bytes(hashlib.sha256(room.encode()).digest()[:4], "big")


def event_tag(event_id: str, epoch: int) -> int:
    """A u32 tag for one event id at one epoch: changing either voids every token."""
    data = event_id.encode() + b"\0" + str(epoch).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


class KeyRing:
    """Secrets by key id (0-255): ``active`` signs, every key verifies.

    Rotation: add a new kid and make it active; keep the old one until every token signed
    with it has expired (pass max age), then drop it: its tokens are then ``unknown_key``.
    Each secret is turned into a subkey for room tokens only, so the same secret used
    elsewhere never signs something a room token could be mistaken for.
    """

    __slots__ = ("_inner", "_outer", "active", "subkeys")

    def __init__(self, secrets: dict[int, bytes], active: int) -> None:
        if active not in secrets:
            raise ValueError(f"active key id {active} is not in the key ring")
        self.subkeys: dict[int, bytes] = {}
        for kid, secret in secrets.items():
            if not 0 <= kid <= 255:
                raise ValueError(f"key id {kid} is outside 0-255")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"key {kid}: a secret needs at least {MIN_SECRET_BYTES} bytes")
            self.subkeys[kid] = hmac.digest(secret, _SUBKEY_LABEL, "sha256")
        self.active = active
        # HMAC (RFC 2104) from SHA-256 states that have already hashed the key pads: a MAC
        # is then two state copies, two updates and two digests, all in C (the hmac
        # module's copy() and digest() run as Python code; 0.5 instead of 0.8 µs).
        self._inner: dict[int, Any] = {}
        self._outer: dict[int, Any] = {}
        for kid, subkey in self.subkeys.items():
            padded = subkey.ljust(_SHA256_BLOCK, b"\0")  # a subkey is 32 bytes: no pre-hash
            self._inner[kid] = hashlib.sha256(padded.translate(_IPAD))
            self._outer[kid] = hashlib.sha256(padded.translate(_OPAD))

    def mac(self, kid: int, body: bytes) -> bytes:
        """HMAC-SHA256(subkey[kid], body), truncated to MAC_BYTES."""
        inner = self._inner[kid].copy()
        inner.update(body)
        outer = self._outer[kid].copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest[:MAC_BYTES]


@dataclass(slots=True)
class Place:
    """A spot in line. ``number`` is its arrival number in the event; ``seen`` its last poll.

    A place is live while wall <= max(seen + hold, return_at).
    """

    number: int
    issued_at: int
    seen: int
    return_at: int = 0
    flags: int = 0
    kid: int = 0


@dataclass(slots=True)
class Pass:
    """An admitted shopper's right to continue. ``pass_id`` is the place number it came from.

    Live while wall < expires_at and wall <= seen + idle.
    """

    pass_id: int
    issued_at: int
    seen: int
    expires_at: int
    flags: int = 0
    kid: int = 0


class RoomTokens:
    """Signs and verifies the tokens of one room at one event epoch."""

    __slots__ = ("event", "keys", "max_skew", "room")

    def __init__(
        self, room: str, event_id: str, epoch: int, keys: KeyRing, max_skew: float
    ) -> None:
        self.room = room_tag(room)
        self.event = event_tag(event_id, epoch)
        self.keys = keys
        self.max_skew = max_skew

    def sign_place(self, place: Place) -> str:
        return self.place_token(place).decode("ascii")

    def sign_pass(self, p: Pass) -> str:
        return self.pass_token(p).decode("ascii")

    def place_token(self, place: Place) -> bytes:
        """``sign_place`` as ASCII bytes, the form cookies and headers carry."""
        return self._sign(
            KIND_PLACE, place.flags, place.number, place.issued_at, place.seen, place.return_at
        )

    def pass_token(self, p: Pass) -> bytes:
        """``sign_pass`` as ASCII bytes."""
        return self._sign(KIND_PASS, p.flags, p.pass_id, p.issued_at, p.seen, p.expires_at)

    def read_place(self, token: str | bytes, wall: float, hold: float) -> Place | str:
        """The place, or the reason (one of REASONS) it is refused. ``token`` as text, or
        as the bytes of a cookie or header (no decoding then)."""
        fields = self._open(token, KIND_PLACE)
        if isinstance(fields, str):
            return fields
        kid, flags, number, issued_at, seen, return_at = fields
        if issued_at > wall + self.max_skew or seen > wall + self.max_skew:
            return FUTURE
        if wall > seen + hold and wall > return_at:
            return EXPIRED
        return Place(number, issued_at, seen, return_at, flags, kid)

    def read_pass(self, token: str | bytes, wall: float, idle: float) -> Pass | str:
        """The pass, or the reason (one of REASONS) it is refused (``token`` as above)."""
        fields = self._open(token, KIND_PASS)
        if isinstance(fields, str):
            return fields
        kid, flags, pass_id, issued_at, seen, expires_at = fields
        if issued_at > wall + self.max_skew or seen > wall + self.max_skew:
            return FUTURE
        if wall >= expires_at or wall > seen + idle:
            return EXPIRED
        return Pass(pass_id, issued_at, seen, expires_at, flags, kid)

    def _sign(self, kind: int, flags: int, ident: int, iat: int, seen: int, last: int) -> bytes:
        kid = self.keys.active
        body = _LAYOUT.pack(
            VERSION, kind, kid, flags, self.room, self.event, ident, iat, seen, last
        )
        raw = binascii.b2a_base64(body + self.keys.mac(kid, body), newline=False)
        return raw.translate(_TO_URLSAFE)

    def _open(self, token: str | bytes, kind: int) -> tuple[int, int, int, int, int, int] | str:
        """Checks in the order of the reasons' precedence; the MAC before any field's meaning."""
        if len(token) != TOKEN_CHARS or not token.isascii():
            return MALFORMED
        data = token.encode("ascii") if isinstance(token, str) else token
        try:
            raw = binascii.a2b_base64(data.translate(_FROM_URLSAFE), strict_mode=True)
        except binascii.Error:
            return MALFORMED
        if len(raw) != BODY_BYTES + MAC_BYTES:
            return MALFORMED
        version, got_kind, kid, flags, room, event, ident, iat, seen, last = _LAYOUT.unpack_from(
            raw
        )
        if version != VERSION or got_kind != kind:
            return MALFORMED
        if kid not in self.keys.subkeys:
            return UNKNOWN_KEY
        expected = self.keys.mac(kid, raw[:BODY_BYTES])
        if not hmac.compare_digest(expected, raw[BODY_BYTES:]):
            return BAD_MAC
        if room != self.room:
            return OTHER_ROOM
        if event != self.event:
            return OTHER_EVENT
        return (kid, flags, ident, iat, seen, last)
