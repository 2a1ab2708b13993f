"""The small value types of guard's configuration: durations, sizes, rates, addresses.

Each parser raises ``PydanticCustomError`` whose message names the expected form,
so ``guard check`` says what to write instead of echoing pydantic's internals.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"(\d+)\s*([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|m)")
_HOST_PORT = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})"
)
# RFC 9110 token: what an HTTP method may consist of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PARAM = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a path parameter name: no '=', ';' or '/'
_ROUTE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # follows the last '.' of a session id

DURATION_FORM = 'expected a duration like "500ms", "2s" or "1m"'
SIZE_FORM = 'expected a size like "8k", "10m", "1g" or a number of bytes'
RATE_FORM = 'expected "<n>/s" or "<n>/m"'
HOST_PORT_FORM = 'expected "host:port" like "0.0.0.0:8000" or "[::1]:8000"'


def shown(value: Any) -> str:
    """How a rejected input appears after 'got' in a message: as the user wrote it."""
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _fail(kind: str, form: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, "{form}, got {got}", {"form": form, "got": shown(value)})


def parse_duration(value: Any) -> float:
    """'500ms' / '2s' / '1m' / '1h' / a number of seconds -> float seconds (>= 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    else:
        raise _fail("guard_duration", DURATION_FORM, value)
    if not math.isfinite(seconds) or seconds < 0:
        raise _fail("guard_duration", DURATION_FORM, value)
    return seconds


def parse_positive_duration(value: Any) -> float:
    """A duration where zero makes no sense (every deadline and interval)."""
    seconds = parse_duration(value)
    if seconds == 0:
        raise _fail("guard_duration", "expected a duration greater than 0", value)
    return seconds


def parse_size(value: Any) -> int:
    """'8k' / '10m' / '1g' (binary multiples, like nginx) / an int -> bytes (>= 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value.strip())):
        size = int(m[1]) * _SIZE_UNITS[m[2].lower()]
    else:
        raise _fail("guard_size", SIZE_FORM, value)
    if size < 1:
        raise _fail("guard_size", "expected a size greater than 0", value)
    return size


def _method(value: Any) -> str:
    if value == "*":  # a token by the grammar, but no client sends it: the rule never matched
        raise _fail(
            "guard_method",
            "expected an HTTP method; to match every method, leave out methods",
            value,
        )
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value.upper()
    raise _fail("guard_method", 'expected an HTTP method like "GET" or "POST"', value)


def _header_name(value: Any) -> str:
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise _fail("guard_header", 'expected a header name like "X-Real-IP"', value)


def _session_param(value: Any) -> str:
    if isinstance(value, str) and _PARAM.fullmatch(value):
        return value.lower()  # matched in any case, like the servlet containers do
    raise _fail("guard_session_param", 'expected a path parameter name like "jsessionid"', value)


def _cookie_name(value: Any) -> str:
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise _fail("guard_cookie_name", 'expected a cookie name like "JSESSIONID"', value)


def _route(value: Any) -> Any:
    if isinstance(value, str) and not _ROUTE.fullmatch(value):
        raise _fail(
            "guard_route",
            "expected a route of letters, digits, '_' or '-' (the jvmRoute, no '.')",
            value,
        )
    return value


def _one_or_many(value: Any) -> Any:
    """A single scalar where a list is expected means a list of one ('methods: GET')."""
    return [value] if isinstance(value, str) else value


def _dedupe(methods: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(methods))  # 'get' and 'GET' are one method; keep the order


def _network(value: Any) -> Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    try:
        # strict: '10.0.0.5/8' is a typo for '10.0.0.0/8' more often than a wish.
        return ipaddress.ip_network(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        raise _fail(
            "guard_network", 'expected an address or network like "10.0.0.0/8"', value
        ) from None


def _name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "guard_name",
            "expected a name of letters, digits, '.', '_' or '-' (at most 64), got {got}",
            {"got": shown(value)},
        )
    return value


_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/]*")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# Requests have these decoded before matching (see core/paths.py), so a pattern must too.
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")


def _pattern_error(value: str) -> str | None:
    """Why ``value`` can never match a canonical path, or None if it is a good pattern."""
    if not value.startswith("/"):
        return 'expected a path pattern starting with "/"'
    if not _PATH_CHARS.fullmatch(_PCT.sub("", value)):
        return "expected only URL path characters (non-ASCII must be percent-encoded)"
    for code in _PCT.findall(value):
        if (
            code.upper() in ("00", "2F", "5C")
            or code != code.upper()
            or _UNRESERVED.match(chr(int(code, 16)))
        ):
            return 'expected "%XX" only for reserved characters, upper-case, not %00 %2F %5C'
    segments = value.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment in (".", "..") or (segment == "" and index < len(segments) - 1):
            return "expected a canonical path (no '.', '..' or '//' segments)"
        if "**" in segment and segment != "**":
            return "'**' must be a whole segment, like \"/x/**\""
    return None


def _pattern(value: Any) -> Any:
    if isinstance(value, str) and (reason := _pattern_error(value)):
        raise PydanticCustomError(
            "guard_pattern", "{reason}, got {got}", {"reason": reason, "got": shown(value)}
        )
    return value


class HostPort(BaseModel):
    """A listen address; written 'host:port', IPv6 in brackets. Port 0 = any free port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: Annotated[int, Strict(), Field(ge=0, le=65535)]

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, HostPort | dict):
            return value
        m = _HOST_PORT.fullmatch(value.strip()) if isinstance(value, str) else None
        if m is None or int(m["port"]) > 65535:
            raise _fail("guard_host_port", HOST_PORT_FORM, value)
        if m["v6"] is not None:
            try:
                ipaddress.IPv6Address(m["v6"])
            except ValueError:
                raise _fail("guard_host_port", HOST_PORT_FORM, value) from None
        return {"host": m["v6"] or m["host"], "port": int(m["port"])}

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Rate(BaseModel):
    """A token-bucket refill rate; ``text`` keeps the form the user wrote ('30/m')."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Checked here too: a YAML mapping reaches the fields without passing through the text.
    per_second: float = Field(gt=0, allow_inf_nan=False)
    text: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, Rate | dict):  # built in code: Rate(per_second=..., text=...)
            return value
        m = _RATE.fullmatch(value.strip()) if isinstance(value, str) else None
        count = float(m[1]) if m else 0.0
        if m is None or count <= 0:
            raise _fail("guard_rate", RATE_FORM + " with n > 0" if m else RATE_FORM, value)
        per_second = count if m[2] == "s" else count / 60.0
        return {"per_second": per_second, "text": f"{m[1]}/{m[2]}"}

    def __str__(self) -> str:
        return self.text


# Strict: YAML already gives real ints and booleans; a quoted "100" or 'yes' is a mistake.
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Duration = Annotated[float, PlainValidator(parse_positive_duration)]
DurationOrZero = Annotated[float, PlainValidator(parse_duration)]
Size = Annotated[int, PlainValidator(parse_size)]
NetworkList = Annotated[
    tuple[Annotated[Network, PlainValidator(_network)], ...], BeforeValidator(_one_or_many)
]
Methods = Annotated[
    tuple[Annotated[str, PlainValidator(_method)], ...],
    Field(min_length=1),
    BeforeValidator(_one_or_many),
    AfterValidator(_dedupe),
]
HeaderNames = Annotated[
    tuple[Annotated[str, PlainValidator(_header_name)], ...], BeforeValidator(_one_or_many)
]
Name = Annotated[str, Strict(), BeforeValidator(_name)]
SessionParams = Annotated[
    tuple[Annotated[str, PlainValidator(_session_param)], ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_dedupe),
]
CookieNames = Annotated[
    tuple[Annotated[str, PlainValidator(_cookie_name)], ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_dedupe),
]
CookieName = Annotated[str, PlainValidator(_cookie_name)]
Route = Annotated[str, Strict(), BeforeValidator(_route)]
PathPattern = Annotated[str, Strict(), BeforeValidator(_pattern)]


def _health_path(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"/[\x21-\x7e]*", value):
        raise _fail("guard_health_path", 'expected a request path like "/health"', value)
    return value


HealthPath = Annotated[str, Strict(), BeforeValidator(_health_path)]


URL_FORM = 'expected "http://host:port" with no path'


def _backend_url(value: Any) -> str:
    """Check and normalise a backend address to 'http://host:port'."""
    if not isinstance(value, str):
        raise _fail("guard_url", URL_FORM, value)
    parts = urlsplit(value.strip())
    if parts.scheme.lower() == "https":
        raise _fail("guard_url", "https backends are not supported yet; " + URL_FORM, value)
    try:
        port = parts.port or 80
    except ValueError:  # port out of range or not a number
        raise _fail("guard_url", URL_FORM, value) from None
    extra = parts.query or parts.fragment or parts.username or parts.password
    if (
        parts.scheme.lower() != "http"
        or not parts.hostname
        or parts.path not in ("", "/")
        or extra
        or value.strip().endswith(("?", "#"))
    ):
        raise _fail("guard_url", URL_FORM, value)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}:{port}"


BackendUrl = Annotated[str, PlainValidator(_backend_url)]
