"""Cluster mode for one Runtime: its ClusterState, lease manager and admin view.

Imported by the runtime; Redis is imported only when a config has a ``cluster:`` section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from guard.cluster.state import ClusterState
from guard.config import Config
from guard.config.cluster import Cluster
from guard.core.admission import Admission

if TYPE_CHECKING:
    from guard.cluster.manager import LeaseManager
    from guard.cluster.status import ClusterStatus


class ClusterMode:
    def __init__(self, cfg: Cluster) -> None:
        self.cfg = cfg
        self.state = ClusterState()
        self.manager: LeaseManager | None = None
        self.status: ClusterStatus | None = None

    @classmethod
    def of(cls, config: Config) -> ClusterMode | None:
        return None if config.cluster is None else cls(config.cluster)

    async def start(self, admission: Callable[[], Admission], clock: Callable[[], float]) -> None:
        """Lease once before serving (bounded by redis_timeout), then keep leasing."""
        from guard.cluster.manager import LeaseManager
        from guard.cluster.status import ClusterStatus

        self.manager = LeaseManager(self.cfg, self.state, admission, clock)
        await self.manager.call_once()
        self.manager.start()
        self.status = ClusterStatus(self.manager)

    async def stop(self) -> None:
        if self.manager is not None:
            await self.manager.leave()
            await self.manager.stop()
        if self.status is not None:
            await self.status.close()
