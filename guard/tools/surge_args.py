"""`guard surge` flags, the options they make, and the loopback-only target policy.

Standard library only, so `guard --help` does not import the HTTP client.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from guard.tools.surge_schedule import Shape, parse_duration, parse_rate, parse_spike


class TargetError(ValueError):
    """The URL cannot be loaded: not http, unresolvable, or not on this machine."""


@dataclass(frozen=True)
class Target:
    host_header: str
    address: str  # what surge connects to (resolved once, at start)
    port: int
    path: str


@dataclass(frozen=True)
class SurgeOptions:
    shape: Shape
    paths: tuple[str, ...]  # the journey: each shopper GETs these in order
    poisson: bool = False
    connections: int = 256
    timeout: float = 30.0
    patience: float = 60.0
    max_retries: int = 10
    think: float = 0.0
    browsers: float = 1.0  # share of shoppers sending Accept: text/html (the rest JSON)
    seed: int | None = None
    keep_records: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("url", help="target, e.g. http://127.0.0.1:8000/event (loopback only)")
    add("--rate", type=parse_rate, default=100.0, help="arrivals per second: 500 or 500/s")
    add("--duration", type=parse_duration, default=10.0, help="arrivals for this long (10s)")
    add("--ramp", type=parse_duration, default=0.0, help="reach --rate linearly over this (0)")
    add("--ramp-from", type=parse_rate, default=0.0, help="rate the ramp starts at (0)")
    add("--spike", type=parse_spike, action="append", default=[], metavar="[AT+]LEN@Nx",
        help="rate x N for LEN from AT (else mid-run): 5s@3x, 10s+5s@3x; repeatable")  # fmt: skip
    add("--arrivals", choices=("uniform", "poisson"), default="uniform",
        help="evenly spaced (exact counts) or Poisson (bursty, like real shoppers)")  # fmt: skip
    add("--path", help="the journey's first page (default: the URL's path)")
    add("--then", action="append", default=[], metavar="PATH", help="next page; repeatable")
    add("--think", type=parse_duration, default=0.0, help="pause between pages (0)")
    add("--browsers", type=float, default=1.0, help="share sending Accept: text/html (1.0)")
    add("--connections", type=int, default=256, help="most keep-alive connections (256)")
    add("--timeout", type=parse_duration, default=30.0, help="per request, from due time (30s)")
    add("--patience", type=parse_duration, default=60.0,
        help="a shopper gives up rather than retry later than this after arrival")  # fmt: skip
    add("--max-retries", type=int, default=10, help="retries per page after Retry-After (10)")
    add("--seed", type=int, help="random seed (Poisson arrivals, browser share)")
    add("--json", action="store_true", help="print the summary as JSON")
    add("--quiet", action="store_true", help="no progress line")
    add("--records", metavar="FILE", help="write every request as a JSON line to FILE")
    add("--allow-remote", action="store_true", help="allow a target that is not loopback")


def options_from(args: argparse.Namespace, target: Target) -> SurgeOptions:
    shape = Shape(args.rate, args.duration, args.ramp, args.ramp_from, tuple(args.spike))
    if args.connections < 1 or args.max_retries < 0 or not 0 <= args.browsers <= 1:
        raise TargetError("--connections >= 1, --max-retries >= 0, 0 <= --browsers <= 1")
    return SurgeOptions(
        shape=shape,
        paths=(args.path or target.path, *args.then),
        poisson=args.arrivals == "poisson",
        connections=args.connections,
        timeout=args.timeout,
        patience=args.patience,
        max_retries=args.max_retries,
        think=args.think,
        browsers=args.browsers,
        seed=args.seed,
        keep_records=bool(args.records),
    )


def resolve_target(url: str, allow_remote: bool = False) -> Target:
    """Parse and resolve the URL; refuse anything off this machine unless allowed."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TargetError(
            f"expected an http:// URL with a host, got {url!r} (https is not supported)"
        )
    try:
        port = parts.port or 80
    except ValueError as err:
        raise TargetError(f"bad port in {url!r}: {err}") from None
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise TargetError(f"cannot resolve {parts.hostname!r}: {err}") from None
    addresses = [str(info[4][0]) for info in found]
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise TargetError(
            f"refusing to load {parts.hostname} ({', '.join(sorted(set(remote)))}): it is not a "
            "loopback address, and surge only loads targets on this machine (127.0.0.0/8, ::1). "
            "Pass --allow-remote only for a host you own and may load."
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.netloc, addresses[0], port, path)
