"""The ``cluster:`` section: several guard instances share ceilings and rates via Redis.

Without it guard keeps everything in memory, exactly as before. See docs/CLUSTER.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from guard.config.errors import conflicts
from guard.config.sections import MODEL
from guard.config.types import Duration, DurationOrZero, Name, shown

__all__ = ["REDIS_URL_FORM", "Cluster"]

REDIS_URL_FORM = (
    "expected redis://host:port[/db], rediss://host:port[/db] (TLS) or"
    " sentinel://host:port[,host:port...]/service[/db]"
)


def _redis_url(value: Any) -> str:
    if isinstance(value, str):
        scheme, sep, rest = value.partition("://")
        host = rest.split("/", 1)[0].rpartition("@")[2]
        if sep and scheme in ("redis", "rediss") and host:
            return value
        if sep and scheme == "sentinel" and _sentinel_ok(value):
            return value
    raise PydanticCustomError(
        "guard_redis_url", "{form}, got {got}", {"form": REDIS_URL_FORM, "got": shown(value)}
    )


def _sentinel_ok(url: str) -> bool:
    from guard.cluster.client import parse_sentinel  # the one parser of sentinel:// URLs

    try:
        parse_sentinel(url)
    except ValueError:
        return False
    return True


RedisUrl = Annotated[str, PlainValidator(_redis_url)]


class Cluster(BaseModel):
    model_config = MODEL

    name: Name  # one guard cluster = one hash tag {guard:<name>} in Redis
    redis: RedisUrl
    lease_ttl: Duration = 5.0  # >= the p99.9 request duration (a dead instance's slots wait it)
    heartbeat: Duration = 0.25
    redis_timeout: Duration = 0.25  # deadline on each Redis command
    headroom: DurationOrZero = 0.002  # slots held beyond use: this long of arrivals (>= 8)
    recovery_window: Duration = 1.0  # after a Redis restart/failover: re-assert, grant nothing
    on_redis_loss: Literal["keep", "closed", "open"] = "keep"

    @model_validator(mode="after")
    def _consistent_times(self) -> Cluster:
        found: list[tuple[tuple[str, ...], str]] = []
        if self.lease_ttl < 2 * self.heartbeat + self.redis_timeout:
            need = 2 * self.heartbeat + self.redis_timeout
            found.append((("lease_ttl",), f"expected >= 2 heartbeats + redis_timeout ({need:g}s)"))
        if self.recovery_window < 2 * self.heartbeat:
            need = 2 * self.heartbeat
            found.append((("recovery_window",), f"expected >= 2 heartbeats ({need:g}s)"))
        if found:
            raise conflicts(found)
        return self
