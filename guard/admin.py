"""The admin app (served on ``admin_listen`` only, never on the public port).

GET /metrics   Prometheus exposition, collected from the live admission at scrape time
GET /status    JSON: site, backends, rules, config (path, sha256, load time)
GET /healthz   200 "ok" while the event loop answers
POST /reload   re-reads the config file (same as SIGHUP); 200 summary | 400 problems

The app only reads the runtime through :class:`RuntimeLike`, so it is built once and keeps
showing the current admission across reloads. ``/reload`` takes no config in the body: the
file on disk, which ``guard check`` validates and ops review, is the only source of truth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from guard.metrics import AdmissionLike, make_registry, render

__all__ = [
    "LoadedConfigLike",
    "ReloadResult",
    "ReloadResultLike",
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


class ReloadResultLike(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def summary(self) -> Mapping[str, Any] | None: ...

    # Each problem: {"file", "line", "key", "message"} — the fields `guard check` prints.
    @property
    def problems(self) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """A ready-made ReloadResultLike the runtime may return from ``reload()``."""

    ok: bool
    summary: Mapping[str, Any] | None = None
    problems: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


class RuntimeLike(Protocol):
    """What guard.runtime provides. ``reload()`` must swap the config atomically, bump
    ``reload_counts["success" | "failure"]`` and log; SIGHUP goes through the same call."""

    @property
    def admission(self) -> AdmissionLike: ...

    @property
    def loaded(self) -> LoadedConfigLike: ...

    @property
    def reload_counts(self) -> Mapping[str, int]: ...

    async def reload(self) -> ReloadResultLike: ...


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def config_doc(loaded: LoadedConfigLike) -> dict[str, Any]:
    return {
        "path": os.fspath(loaded.path),
        "sha256": loaded.sha256,
        "loaded_at": _iso_utc(loaded.loaded_at),
    }


def status_doc(
    snapshot: Mapping[str, Any], loaded: LoadedConfigLike, reload_counts: Mapping[str, int]
) -> dict[str, Any]:
    """The /status document: the snapshot reshaped to the documented field names."""
    site = snapshot["site"]
    return {
        "site": {"active": site["active"], "max_active": site.get("max_active")},
        "backends": [
            {
                "name": b["name"],
                "url": b["url"],
                "active": b["active"],
                "max_active": b["max_active"],
                "up": bool(b["up"]),
                "draining": bool(b["draining"]),
            }
            for b in snapshot["backends"]
        ],
        "rules": [
            {
                "name": r["name"],
                "active": r["active"],
                "max_active": r.get("max_active"),
                "rate": r.get("rate"),
                "counts": dict(r.get("outcomes") or {}),
            }
            for r in snapshot["rules"]
        ],
        "config": config_doc(loaded),
        "reloads": {k: reload_counts.get(k, 0) for k in ("success", "failure")},
    }


class _Handlers:
    __slots__ = ("registry", "runtime")

    def __init__(self, runtime: RuntimeLike, process_metrics: bool) -> None:
        self.runtime = runtime
        # Lambdas, not values: a reload replaces runtime.admission and the next scrape sees it.
        self.registry = make_registry(
            lambda: runtime.admission, lambda: runtime.reload_counts, process=process_metrics
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = render(self.registry, request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, request: web.Request) -> web.Response:
        rt = self.runtime
        doc = status_doc(rt.admission.snapshot(), rt.loaded, rt.reload_counts)
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


def make_admin_app(runtime: RuntimeLike, *, process_metrics: bool = True) -> web.Application:
    """Routes not listed answer 404; a listed path with another method answers 405."""
    h = _Handlers(runtime, process_metrics)
    app = web.Application()
    app.router.add_get("/metrics", h.metrics)
    app.router.add_get("/status", h.status)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_post("/reload", h.reload)
    return app
