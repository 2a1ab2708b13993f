"""The admin app (served on ``admin_listen`` only, never on the public port).

GET /metrics   Prometheus exposition, collected from the live admission at scrape time
GET /status    JSON: the admission's Snapshot.to_json() (site, backends, rules, pairs,
               durations, upstream errors), config (path, sha256, load time), reloads
GET /healthz   200 "ok" while the event loop answers
POST /reload   re-reads the config file (same as SIGHUP); 200 summary | 400 problems

Every route but /healthz is refused to a foreign Host, a state-changing request from a
foreign Origin, and (with ``admin_token_file``) a request without the token:
see guard.admin_access.

The app only reads the runtime through :class:`RuntimeLike`, so it is built once and keeps
showing the current admission across reloads. ``/reload`` takes no config in the body: the
file on disk, which ``guard check`` validates and ops review, is the only source of truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from guard.admin_access import AdminAccess, access_middleware
from guard.core import Snapshot
from guard.metrics import make_registry, render
from guard.reload import ReloadResult

__all__ = [
    "AdmissionLike",
    "LoadedConfigLike",
    "RuntimeLike",
    "config_doc",
    "make_admin_app",
    "status_doc",
]


class LoadedConfigLike(Protocol):
    """guard.config.LoadedConfig, as far as the admin app needs it."""

    @property
    def path(self) -> os.PathLike[str] | str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def loaded_at(self) -> float: ...  # time.time()


class AdmissionLike(Protocol):
    """guard.core.Admission, as far as the admin app needs it."""

    def snapshot(self) -> Snapshot: ...


class RuntimeLike(Protocol):
    """What guard.runtime provides. ``reload()`` must swap the config atomically, bump
    ``reload_counts["success" | "failure"]`` and log; SIGHUP goes through the same call."""

    @property
    def admission(self) -> AdmissionLike: ...

    @property
    def loaded(self) -> LoadedConfigLike: ...

    @property
    def reload_counts(self) -> Mapping[str, int]: ...

    async def reload(self) -> ReloadResult: ...


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def config_doc(loaded: LoadedConfigLike) -> dict[str, Any]:
    return {
        "path": os.fspath(loaded.path),
        "sha256": loaded.sha256,
        "loaded_at": _iso_utc(loaded.loaded_at),
    }


def status_doc(
    snapshot: Snapshot, loaded: LoadedConfigLike, reload_counts: Mapping[str, int]
) -> dict[str, Any]:
    """The /status document: the snapshot's JSON, the config it runs and the reload counts."""
    return {
        **snapshot.to_json(),
        "config": config_doc(loaded),
        "reloads": {k: reload_counts.get(k, 0) for k in ("success", "failure")},
    }


def cluster_collector(runtime: RuntimeLike) -> Any:
    """guard_cluster_* metrics when the runtime is in cluster mode (read at scrape time)."""
    cluster = getattr(runtime, "cluster", None)
    if cluster is None:
        return None
    from guard.cluster.status import LazyClusterCollector

    return LazyClusterCollector(cluster)


class _Handlers:
    __slots__ = ("registry", "runtime")

    def __init__(self, runtime: RuntimeLike, process_metrics: bool) -> None:
        self.runtime = runtime
        # Lambdas, not values: a reload replaces runtime.admission and the next scrape sees it.
        self.registry = make_registry(
            lambda: runtime.admission.snapshot(),
            lambda: runtime.reload_counts,
            process=process_metrics,
            extra=cluster_collector(runtime),
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = render(self.registry, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, request: web.Request) -> web.Response:
        rt = self.runtime
        doc = status_doc(rt.admission.snapshot(), rt.loaded, rt.reload_counts)
        cluster = getattr(rt, "cluster", None)
        if cluster is not None and cluster.status is not None:
            doc["cluster"] = await cluster.status.view()
        return web.json_response(doc, headers={"Cache-Control": "no-store"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def reload(self, request: web.Request) -> web.Response:
        # body_exists is true for Content-Length > 0 and for any chunked body; we refuse
        # without reading it, and close the connection so aiohttp need not drain it either.
        if request.body_exists:
            resp = web.json_response(
                {
                    "error": "body_not_accepted",
                    "message": "POST /reload re-reads the config file; send no body",
                },
                status=400,
            )
            resp.force_close()
            return resp
        result = await self.runtime.reload()
        if result.ok:
            return web.json_response(
                {
                    "result": "success",
                    "config": config_doc(self.runtime.loaded),
                    "summary": dict(result.summary or {}),
                }
            )
        return web.json_response(
            {"error": "invalid_config", "problems": [dict(p) for p in result.problems]},
            status=400,
        )


def make_admin_app(
    runtime: RuntimeLike,
    *,
    process_metrics: bool = True,
    access: Callable[[], AdminAccess] | None = AdminAccess,
) -> web.Application:
    """Routes not listed answer 404; a listed path with another method answers 405.
    ``access`` gives the protection in force (guard.admin_access; the default: loopback
    names only, no token); None only for a unix socket, which file permissions guard."""
    h = _Handlers(runtime, process_metrics)
    app = web.Application(middlewares=[access_middleware(access)] if access else [])
    app.router.add_get("/metrics", h.metrics)
    app.router.add_get("/status", h.status)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_post("/reload", h.reload)
    return app
