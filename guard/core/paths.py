"""Canonical request paths, computed the way a servlet container does.

Rules match on the canonical path and the backend receives that same path, so what was
matched is what the WAS routes: no encoding trick (``%2e%2e``, ``..;/``, ``//``, ``%65``)
gets a request past ``/event/**`` or around a block rule.

Order (Tomcat's): refuse ``%00`` ``%2F`` ``%5C``, backslash, ``#`` and non-ASCII; strip
``;params`` from every segment; decode escapes of unreserved characters and upper-case the
rest; merge ``//``; resolve ``.`` and ``..`` (refusing to climb above the root).

Decoding only ever yields ALPHA DIGIT ``-._~``, never ``/`` or ``;``, so decoding the
whole path before splitting it gives exactly the result of strip-then-decode per segment;
the code does it in that cheaper order.
"""

from __future__ import annotations

from typing import Final

_HEX: Final = "0123456789abcdefABCDEF"
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN: Final = frozenset({"00", "2F", "5C"})
SESSION_PARAMS: Final[tuple[str, ...]] = (
    "jsessionid",
)  # the default of session_params  # NUL, '/', '\': never valid inside a segment


def _escape_table() -> dict[str, str]:
    """Two hex digits (any case) -> their replacement, for every allowed escape."""
    table = {}
    for hi in _HEX:
        for lo in _HEX:
            upper = (hi + lo).upper()
            if upper in _FORBIDDEN:
                continue
            char = chr(int(upper, 16))
            table[hi + lo] = char if char in _UNRESERVED else "%" + upper
    return table


_ESCAPES: Final = _escape_table()


class BadPath(ValueError):
    """The request-target cannot be routed safely: answer 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CanonicalTarget:
    """Built for every request: a plain class (a NamedTuple's __new__ runs as Python)."""

    __slots__ = ("forward", "path")

    def __init__(self, path: str, forward: str) -> None:
        self.path = path  # canonical path: what rules match (no params, no query)
        self.forward = (
            forward  # what the backend receives: path [+ ;jsessionid=… (kept)] [+ ?query]
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CanonicalTarget):
            return NotImplemented
        return self.path == other.path and self.forward == other.forward

    def __hash__(self) -> int:
        return hash((self.path, self.forward))

    def __repr__(self) -> str:
        return f"CanonicalTarget(path={self.path!r}, forward={self.forward!r})"


def canonicalize(target: str, keep: tuple[str, ...] = SESSION_PARAMS) -> CanonicalTarget:
    """Canonical path and forward target of a raw request-target (latin-1 str). ``keep``:
    the path parameters (lower case, matched in any case) the backend still receives."""
    q = target.find("?")
    path = target if q < 0 else target[:q]
    # Fast path: with none of these, every step below is the identity. '.' only
    # matters as a dot segment, which (with no '%' or ';') must appear as "/.".
    if (
        path[:1] == "/"
        and target.isascii()  # O(1) on str
        and "%" not in path
        and ";" not in path
        and "/." not in path
        and "//" not in path
        and "\\" not in path
        and "#" not in target
    ):
        return CanonicalTarget(path, target)
    return _canonicalize(target, keep)


def _canonicalize(target: str, keep: tuple[str, ...] = SESSION_PARAMS) -> CanonicalTarget:
    if not target.isascii():
        raise BadPath("non-ASCII character in request-target")
    if "#" in target:
        raise BadPath("fragment in request-target")
    if target[:1] != "/":
        target = _origin_form(target)
    q = target.find("?")
    path, query = (target, "") if q < 0 else (target[:q], target[q:])
    if "\\" in path:
        raise BadPath("backslash in path")
    if "%" in path:
        path = _decode(path)
    segments = path.split("/")
    last = segments[-1]
    session = _session_param(last, keep) if ";" in last else ""
    canonical = _resolve(segments)
    return CanonicalTarget(canonical, canonical + session + query)


def _origin_form(target: str) -> str:
    """The path?query of an absolute-form target (http[s]://host[:port]/path?query)."""
    head = target[:8].lower()
    if head.startswith("http://"):
        rest = target[7:]
    elif head.startswith("https://"):
        rest = target[8:]
    else:
        raise BadPath("request-target must start with '/'")
    end = len(rest)
    for sep in "/?":
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    if end == 0:
        raise BadPath("absolute-form request-target without a host")
    rest = rest[end:]
    return rest if rest[:1] == "/" else "/" + rest  # "" -> "/", "?q" -> "/?q"


def _decode(path: str) -> str:
    """Decode escapes of unreserved characters, upper-case the others, refuse bad ones."""
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        replacement = _ESCAPES.get(part[:2])
        if replacement is None:
            if part[:2].upper() in _FORBIDDEN:
                raise BadPath("encoded NUL, slash or backslash in path")
            raise BadPath("malformed percent-encoding in path")
        out.append(replacement)
        out.append(part[2:])
    return "".join(out)


def _session_param(segment: str, keep: tuple[str, ...]) -> str:
    """The first kept ';name=…' of a segment's parameters, or '' (URL-rewritten sessions:
    Tomcat's ``;jsessionid=``, or the name an app gave its session cookie)."""
    for param in segment.split(";")[1:]:
        eq = param.find("=")
        if eq > 0 and param[:eq].lower() in keep:
            return ";" + param
    return ""


def param_route(forward: str) -> str | None:
    """The session route of a forward target's kept path parameter, if any. A canonical
    path holds no ';', so the first one before the query starts the kept parameter."""
    q = forward.find("?")
    end = q if q >= 0 else len(forward)
    semi = forward.find(";", 0, end)
    if semi < 0:
        return None
    return route_of(forward[forward.find("=", semi) + 1 : end])


def route_of(session_id: str) -> str | None:
    """mod_jk's jvmRoute: what follows the last '.' of a session id ("A1B2.jvm1" -> "jvm1")."""
    dot = session_id.rfind(".")
    if dot < 0 or dot == len(session_id) - 1:
        return None
    return session_id[dot + 1 :]


def _resolve(segments: list[str]) -> str:
    """Strip params, merge empty segments, resolve dot segments; segments[0] is ''."""
    out: list[str] = []
    seg = ""
    for raw in segments[1:]:
        cut = raw.find(";")
        seg = raw if cut < 0 else raw[:cut]
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if not out:
                raise BadPath("'..' climbs above the root")
            out.pop()
            continue
        out.append(seg)
    if not out:
        return "/"
    # A trailing '', '.' or '..' leaves a directory: keep (or add) the trailing slash.
    tail = "/" if seg in ("", ".", "..") else ""
    return "/" + "/".join(out) + tail
