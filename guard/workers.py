"""`workers: N`: N guard processes on one port (SO_REUSEPORT) under a small supervisor.

How the limits hold across workers: every ceiling and rate is split between the workers
(`Admission(share=(i, n))`: worker i gets floor(C/n), plus one for i < C mod n), so the sum
over workers is exactly the configured value and the fleet can never exceed it. The price is
fragmentation: the kernel spreads *connections* over workers by hash, so when load is
uneven a worker may refuse while another still has room. The bound: at most n-1 slots of a
ceiling (and (n-1)/n of a burst) can sit idle while a request is refused. Ceilings smaller
than n leave some workers with a share of 0 for that scope. Shared state in Redis (a later
issue) removes the fragmentation at the cost of a network round trip.

The supervisor owns the admin port. It asks every worker's admin app (on a unix socket)
and merges. /status: each answer is read back into a core `Snapshot` and the fleet's is
`guard.core.snapshot.merge()` of them (counts, gauges and ceilings summed, a backend up
when any worker sees it up); the reload counts are the highest any worker reports.
/metrics: samples are summed, `guard_backend_up` and the reload counter take the maximum.
`POST /reload` and SIGHUP validate the file once, then reload every worker.
A worker that dies is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from guard.admin_access import AdminAccess, access_middleware
from guard.config import ConfigError, load_config, problems_as_json
from guard.core.snapshot import Snapshot, merge
from guard.live_fleet import FleetView
from guard.live_routes import add_live_routes

log = logging.getLogger("guard.workers")
_RELOAD_RESULTS = ("success", "failure")
_MAX_MERGE = (
    "guard_backend_up",
    "guard_config_reloads_total",
    "process_start_time_seconds",
    "guard_cluster_redis_up",
)


class WorkerUnavailable(Exception):
    pass


class Supervisor:
    def __init__(self, path: Path, n: int) -> None:
        self.path = path
        self.n = n
        self.dir = Path(tempfile.mkdtemp(prefix="guard-workers-"))
        self.procs: list[asyncio.subprocess.Process | None] = [None] * n
        self.stopping = False
        # The supervisor owns the admin port, so it applies the admin protection.
        self.access = AdminAccess.from_config(load_config(path).config)

    def socket(self, i: int) -> Path:
        return self.dir / f"worker-{i}.sock"

    async def spawn(self, i: int) -> None:
        self.socket(i).unlink(missing_ok=True)
        self.procs[i] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guard.cli", "worker", "-c", str(self.path),
            "--index", str(i), "--of", str(self.n), "--admin-socket", str(self.socket(i)),
        )  # fmt: skip

    async def keep_alive(self, i: int) -> None:
        while not self.stopping:
            proc = self.procs[i]
            assert proc is not None
            code = await proc.wait()
            if self.stopping:
                return
            log.error("worker %d exited with %s; restarting it", i, code)
            await self.spawn(i)

    async def ask(self, i: int, method: str, route: str) -> tuple[int, str]:
        conn = aiohttp.UnixConnector(path=str(self.socket(i)))
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(connector=conn, timeout=timeout) as session,
            session.request(method, f"http://worker{route}") as resp,
        ):
            return resp.status, await resp.text()

    async def ask_all(self, method: str, route: str) -> list[tuple[int, str]]:
        try:
            return list(await asyncio.gather(*(self.ask(i, method, route) for i in range(self.n))))
        except (aiohttp.ClientError, OSError) as err:
            raise WorkerUnavailable(str(err)) from err

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Every worker answers its admin socket (they start in parallel)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.ask_all("GET", "/healthz")
                return
            except WorkerUnavailable:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.05)  # a start-up poll with a deadline, not a synchronisation

    async def reload(self) -> tuple[int, dict[str, Any]]:
        try:
            access = AdminAccess.from_config(load_config(self.path).config)
        except ConfigError as err:
            for problem in err.problems:
                log.error("reload refused: %s", problem)
            return 400, {"error": "invalid_config", "problems": problems_as_json(err)}
        except (OSError, ValueError) as err:  # the token file changed since validation
            log.error("reload refused: %s", err)
            unusable = {"file": str(self.path), "line": 0, "key": "", "message": str(err)}
            return 400, {"error": "invalid_config", "problems": [unusable]}
        self.access = access
        answers = await self.ask_all("POST", "/reload")
        status = max(code for code, _ in answers)
        return status, json.loads(answers[0][1])

    def signal_workers(self, sig: int) -> None:
        for proc in self.procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(sig)

    async def stop(self) -> None:
        self.stopping = True
        for proc in self.procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                await proc.wait()


def merge_status(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's /status from its workers' (every worker runs the same config file)."""
    merged = merge([Snapshot.from_json(doc) for doc in docs])
    reloads = {k: max(int(doc["reloads"].get(k, 0)) for doc in docs) for k in _RELOAD_RESULTS}
    return {**merged.to_json(), "config": docs[0]["config"], "reloads": reloads}


def merge_metrics(texts: list[str]) -> str:
    """Sum samples with the same name and labels across workers (max for the few that are
    not additive; ratios recomputed from the sums). Each family keeps its metadata (from
    the first worker that has it) and all its samples together, also when the workers
    run different configs for a moment (a reload under way)."""
    meta: dict[str, list[str]] = {}  # family -> its # HELP / # TYPE lines
    samples: dict[str, dict[str, float]] = {}  # family -> sample key -> merged value
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("#"):
                family = line.split(" ", 3)[2] if line.count(" ") >= 2 else family
                if len(meta.setdefault(family, [])) < 2 and line not in meta[family]:
                    meta[family].append(line)
                continue
            if not line:
                continue
            key, _, raw = line.rpartition(" ")
            values = samples.setdefault(family, {})
            value = float(raw)
            if key not in values:
                values[key] = value
            elif key.startswith(_MAX_MERGE):
                values[key] = max(values[key], value)
            else:
                values[key] += value
    if "guard_utilization" in samples:
        samples["guard_utilization"] = _utilization(samples)
    lines: list[str] = []
    for family in dict.fromkeys([*meta, *samples]):
        lines += meta.get(family, [])
        lines += [f"{k} {v!r}" for k, v in samples.get(family, {}).items()]
    return "\n".join(lines) + "\n"


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _utilization(samples: dict[str, dict[str, float]]) -> dict[str, float]:
    """The fleet's active / ceiling per scope (a sum of the workers' ratios means nothing)."""
    out: dict[str, float] = {}
    for key in samples["guard_utilization"]:
        labels_of = dict(_LABEL.findall(key))
        scope, name = labels_of.get("scope", ""), labels_of.get("name", "")
        labels = "" if scope == "site" else f'{{{scope}="{name}"}}'
        active = samples.get(f"guard_{scope}_active", {}).get(f"guard_{scope}_active{labels}")
        ceiling = samples.get(f"guard_{scope}_max_active", {}).get(
            f"guard_{scope}_max_active{labels}"
        )
        if active is not None and ceiling:
            out[key] = active / ceiling
    return out


def admin_app(sup: Supervisor, fleet: FleetView | None = None) -> web.Application:
    @web.middleware
    async def unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except WorkerUnavailable as err:
            return web.json_response(
                {"error": "worker_unavailable", "detail": str(err)}, status=503
            )

    async def status(_: web.Request) -> web.Response:
        docs = [json.loads(text) for _, text in await sup.ask_all("GET", "/status")]
        return web.json_response(merge_status(docs))

    async def metrics(_: web.Request) -> web.Response:
        texts = [text for _, text in await sup.ask_all("GET", "/metrics")]
        return web.Response(text=merge_metrics(texts), content_type="text/plain")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def reload(request: web.Request) -> web.Response:
        if request.content_length or request.headers.get("Transfer-Encoding"):
            return web.json_response({"error": "body_not_accepted"}, status=400)
        code, doc = await sup.reload()
        return web.json_response(doc, status=code)

    app = web.Application(middlewares=[access_middleware(lambda: sup.access), unavailable])
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/reload", reload)
    if fleet is not None:  # /live from the workers' frames (guard/live_fleet.py)
        add_live_routes(app, fleet.holder, None)
    return app


async def supervise(path: Path, n: int) -> int:
    cfg = load_config(path).config
    sup = Supervisor(path, n)
    for i in range(n):
        await sup.spawn(i)
    watchers = [asyncio.create_task(sup.keep_alive(i)) for i in range(n)]
    await sup.wait_ready()
    loop = asyncio.get_running_loop()
    fleet = FleetView(path, n, sup.ask, loop.time, time.time)
    fleet.start()
    runner = web.AppRunner(admin_app(sup, fleet), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.admin_listen.host, cfg.admin_listen.port).start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(sup.reload()))
    loop.add_signal_handler(signal.SIGUSR1, sup.signal_workers, signal.SIGUSR1)  # logrotate
    log.info("supervising %d workers on %s; admin on %s", n, cfg.listen, cfg.admin_listen)
    await stop.wait()
    await fleet.stop()
    await sup.stop()
    for task in watchers:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    return 0
