"""What the core reads from the configuration, as Protocols.

guard.config's frozen pydantic models satisfy these structurally; the core never imports
guard.config, so it stays testable with plain objects and free of pydantic at run time.
Every member is a read-only property, so model fields, dataclass fields and properties
(``effective_burst``, ``retry_after_s``, ``host``, ``port``) all fit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

from guard.core.affinity import StickyCookieSpec


class RateSpec(Protocol):
    @property
    def per_second(self) -> float: ...
    @property
    def text(self) -> str: ...


class BackendSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def max_active(self) -> int: ...
    @property
    def drain(self) -> bool: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def route(self) -> str | None: ...  # jvmRoute: session ids ending in ".<route>" come here
    @property
    def sticky(self) -> str: ...  # "strict" (full: refuse) | "prefer" (full: another may take it)


class RuleSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def methods(self) -> Collection[str] | None: ...
    @property
    def max_active(self) -> int | None: ...
    @property
    def rate(self) -> RateSpec | None: ...
    @property
    def effective_burst(self) -> int: ...  # only read when rate is set
    @property
    def per_client(self) -> bool: ...
    @property
    def action(self) -> str: ...  # "wait" | "reject"
    @property
    def bypass(self) -> bool: ...
    @property
    def block(self) -> bool: ...
    @property
    def reserve(self) -> int: ...  # slots of the site and backend ceilings only this rule takes
    @property
    def dry_run(self) -> bool: ...  # forward what its ceilings and rate would refuse, counted


class LimitsSpec(Protocol):
    @property
    def max_tracked_clients(self) -> int: ...


class ConfigSpec(Protocol):
    @property
    def max_active(self) -> int | None: ...
    @property
    def backends(self) -> Sequence[BackendSpec]: ...
    @property
    def rules(self) -> Sequence[RuleSpec]: ...
    @property
    def block_ips(self) -> Sequence[IPv4Network | IPv6Network]: ...
    @property
    def limits(self) -> LimitsSpec: ...
    @property
    def retry_after_s(self) -> int: ...
    @property
    def session_params(self) -> Sequence[str]: ...  # path parameters kept (lower case)
    @property
    def session_cookies(self) -> Sequence[str]: ...  # cookies holding a session id
    @property
    def sticky_cookie(self) -> StickyCookieSpec | None: ...  # guard's own affinity cookie
