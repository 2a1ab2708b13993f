"""`guard check --cluster`: try the cluster's Redis once (connect, TIME, the LEASE script)."""

from __future__ import annotations

import asyncio
import sys

from guard.cluster.client import RedisLink, RedisUnavailable
from guard.cluster.scripts import LEASE
from guard.config.cluster import Cluster


def probe(cfg: Cluster | None) -> int:
    if cfg is None:
        print("cluster: not configured (no cluster: section)", file=sys.stderr)
        return 1
    return asyncio.run(_probe(cfg))


async def _probe(cfg: Cluster) -> int:
    link = RedisLink(cfg.redis, max(cfg.redis_timeout, 1.0))
    try:
        seconds, micros = await link.call("TIME")
        await link.call("PING")
        await link.call("SCRIPT", "LOAD", LEASE.source)
        members = await link.call("ZCARD", f"{{guard:{cfg.name}}}:members")
    except (RedisUnavailable, OSError, ValueError) as exc:
        print(f"cluster: cannot reach {cfg.redis}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an answer from Redis that is an error (AUTH, ACL, no Lua)
        print(f"cluster: {cfg.redis} answered with an error: {exc}", file=sys.stderr)
        return 1
    finally:
        await link.close()
    print(
        f"cluster {cfg.name}: Redis {cfg.redis} reachable (TIME {seconds}.{micros}),"
        f" LEASE script loaded, {members} live member(s)"
    )
    return 0
