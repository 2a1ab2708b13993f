"""Plain stand-ins for guard.config's models (same attribute names), for the core's tests.

Not tests themselves: the core only reads attributes (guard.core.spec), so frozen
dataclasses are enough and these tests do not depend on the config loader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit

from guard.core import Admission, FakeClock, MemoryState, State


@dataclass(frozen=True)
class FakeRate:
    per_second: float
    text: str


def parse_rate(text: str) -> FakeRate:
    count, unit = text.split("/")
    return FakeRate(float(count) / (60.0 if unit == "m" else 1.0), text)


@dataclass(frozen=True)
class FakeBackend:
    name: str
    url: str
    max_active: int
    drain: bool = False
    cooldown: float = 5.0
    route: str | None = None
    sticky: str = "strict"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80


@dataclass(frozen=True)
class FakeRule:
    name: str
    path: str
    methods: tuple[str, ...] | None = None
    max_active: int | None = None
    rate: FakeRate | None = None
    burst: int | None = None
    per_client: bool = False
    action: str = "wait"
    bypass: bool = False
    block: bool = False
    reserve: int = 0
    dry_run: bool = False

    @property
    def effective_burst(self) -> int:
        assert self.rate is not None
        return self.burst or max(1, math.ceil(self.rate.per_second))


@dataclass(frozen=True)
class FakeLimits:
    max_tracked_clients: int = 100_000


@dataclass(frozen=True)
class FakeConfig:
    backends: tuple[FakeBackend, ...]
    rules: tuple[FakeRule, ...] = ()
    max_active: int | None = None
    block_ips: tuple[IPv4Network | IPv6Network, ...] = ()
    limits: FakeLimits = field(default_factory=FakeLimits)
    retry_after: float = 5.0
    session_params: tuple[str, ...] = ("jsessionid",)
    session_cookies: tuple[str, ...] = ("JSESSIONID",)
    sticky_cookie: None = None

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))


def backend(name: str, max_active: int = 10, **kw: object) -> FakeBackend:
    port = 8080 + sum(map(ord, name)) % 100
    return FakeBackend(name, f"http://127.0.0.1:{port}", max_active, **kw)  # type: ignore[arg-type]


def rule(name: str, path: str = "/**", *, rate: str | None = None, **kw: object) -> FakeRule:
    return FakeRule(name, path, rate=parse_rate(rate) if rate else None, **kw)  # type: ignore[arg-type]


def config(
    *backends: FakeBackend,
    rules: tuple[FakeRule, ...] = (),
    block_ips: tuple[str, ...] = (),
    **kw: object,
) -> FakeConfig:
    nets = tuple(ip_network(n) for n in block_ips)
    return FakeConfig(backends or (backend("a"),), rules, block_ips=nets, **kw)  # type: ignore[arg-type]


def build(
    cfg: FakeConfig,
    clock: FakeClock | None = None,
    state: State | None = None,
    share: tuple[int, int] = (0, 1),
) -> tuple[Admission, FakeClock, State]:
    clock = clock or FakeClock(1000.0)
    state = state or MemoryState()
    return Admission(cfg, state, clock, share), clock, state
