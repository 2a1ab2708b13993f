"""RedisLink: one Redis connection with a deadline on every command, for background tasks.

Shared by the lease manager and the waiting room's store. Nothing on the request path may
await it. The contract:

- ``await link.call("HGETALL", key)``: one command; ``await link.evalsha(script, keys, args)``:
  a Script by SHA, loading it once on NOSCRIPT (a restarted or failed-over server).
- Every command has a deadline (``timeout``, the config's ``redis_timeout``): TCP may not
  notice a hung Redis for minutes. On a timeout or any connection error the connection is
  dropped (so a late reply can never be read as the answer to the next command: redis-py
  #2624) and the call raises RedisUnavailable. The next call reconnects, but not before the
  backoff (100 ms doubling to 1 s) has passed: until then calls fail at once, without I/O.
- ``healthy``: the last command succeeded. ``run_id``: the server's run_id (INFO server) on
  the current connection. ``take_fresh()``: True once after a (re)connection to a server
  whose run_id differs from the one seen before (a restart, a failover, a Sentinel switch):
  whoever holds state in Redis re-asserts it (the lease script's ``fresh`` flag).
- Errors that are Redis's answer (a script error, WRONGTYPE) are raised as
  redis.exceptions.ResponseError and do not drop the connection.

URLs: ``redis://[user:pass@]host:port/db``, ``rediss://…`` (TLS), and
``sentinel://[user:pass@]h1:26379,h2:26379/service[/db]`` (the master of ``service`` as the
Sentinels name it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

BACKOFF_MIN: Final = 0.1
BACKOFF_MAX: Final = 1.0

Arg = str | int | float | bytes


class RedisUnavailable(Exception):
    """Redis did not answer in time, or the connection failed: nothing is known."""


@dataclass(frozen=True)
class Script:
    """A Lua script shipped with guard (guard/cluster/lua/<name>.lua), called by SHA."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    @classmethod
    def load(cls, name: str) -> Script:
        text = resources.files("guard.cluster").joinpath("lua", f"{name}.lua").read_text()
        return cls(name, text)


def connect_factory(url: str, timeout: float) -> Callable[[], aioredis.Redis]:
    """A function building a new single-connection client for ``url`` (see the module doc)."""
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": None,  # the deadline is RedisLink's, over the whole command
        "retry": Retry(NoBackoff(), 0),  # no hidden retries: the caller decides
        "decode_responses": True,
        "single_connection_client": True,
    }
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        return lambda: aioredis.Redis.from_url(url, **common)
    if parts.scheme != "sentinel":
        raise ValueError(f"expected redis://, rediss:// or sentinel:// URL, got {url!r}")
    hosts, service, db = parse_sentinel(url)
    auth: dict[str, Any] = {
        "username": unquote(parts.username or "") or None,
        "password": unquote(parts.password or "") or None,
    }

    def build() -> aioredis.Redis:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, sentinel_kwargs={"socket_timeout": timeout}, **auth
        )
        master: aioredis.Redis = sentinel.master_for(service, db=db, **auth, **common)
        return master

    return build


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """sentinel://h1:26379,h2:26379/service[/db] -> (hosts, service, db)."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        if not host or not port.isdigit():
            raise ValueError(f"expected sentinel://host:port,host:port/service, got {url!r}")
        hosts.append((host.strip("[]"), int(port)))
    service, _, db = path.partition("/")
    if not service or (db and not db.isdigit()):
        raise ValueError(f"expected sentinel://host:port,host:port/service[/db], got {url!r}")
    return hosts, service, int(db or 0)


class RedisLink:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._connect = connect_factory(url, timeout)
        self._clock = clock
        self._client: aioredis.Redis | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN
        self._known_run_id: str | None = None
        self._fresh = False
        self.healthy = False
        self.run_id: str | None = None
        self.connects = 0  # successful (re)connections, for metrics and tests

    async def call(self, *args: Arg) -> Any:
        """One command; raises RedisUnavailable (connection dropped) or ResponseError."""
        client = await self._ready()
        return await self._bounded(client.execute_command(*args))  # type: ignore[no-untyped-call]

    async def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run ``script`` by SHA; on NOSCRIPT load it (SCRIPT LOAD) and run it again."""
        client = await self._ready()
        try:
            return await self._bounded(client.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            await self._bounded(client.script_load(script.source))
            return await self._bounded(client.evalsha(script.sha, len(keys), *keys, *args))

    def take_fresh(self) -> bool:
        """True once after connecting to a server other than the last one seen."""
        fresh, self._fresh = self._fresh, False
        return fresh

    def keep_fresh(self) -> None:
        """take_fresh() was called but its news could not be delivered: say it again."""
        self._fresh = True

    async def close(self) -> None:
        await self._drop()

    async def _ready(self) -> aioredis.Redis:
        if self._client is not None:
            return self._client
        now = self._clock()
        if now < self._retry_at:
            raise RedisUnavailable("reconnect backoff")
        client = self._connect()
        try:
            info = await asyncio.wait_for(client.info("server"), self.timeout)
        except (TimeoutError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
            await _close_quietly(client)
            self._failed(now)
            raise RedisUnavailable(f"connect: {exc!r}") from exc
        run_id = str(info.get("run_id", ""))
        if self._known_run_id is not None and run_id != self._known_run_id:
            self._fresh = True
        self._known_run_id = self.run_id = run_id
        self._client = client
        self._backoff = BACKOFF_MIN
        self.connects += 1
        return client

    async def _bounded(self, command: Any) -> Any:
        try:
            result = await asyncio.wait_for(command, self.timeout)
        except ResponseError:
            self.healthy = True
            raise
        except (TimeoutError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
            await self._drop()
            self._failed(self._clock())
            raise RedisUnavailable(repr(exc)) from exc
        self.healthy = True
        return result

    def _failed(self, now: float) -> None:
        self.healthy = False
        self._retry_at = now + self._backoff
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        self.run_id = None
        if client is not None:
            await _close_quietly(client)


async def _close_quietly(client: aioredis.Redis) -> None:
    # Closing a broken connection: nothing left to save, whatever it raises.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.aclose(), 0.1)
