"""Shared pieces of the benchmark: paths, tools, HTTP probes, guard's configs and start.

Servers are started with guard.tools.launch (shared with the soak and the tests); load is
in wrk.py, nginx configs in nginx.py, tables in report.py. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guard.tools.launch import HOST, Launched, Launcher, find_tool, free_port, guard_command

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BODY_SIZE = 1024


def ensure_tools() -> None:
    """Install nginx and wrk from Debian if missing (sudo only when not root)."""
    missing = [t for t in ("nginx", "wrk") if find_tool(t) is None]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    install = [*sudo, "apt-get", "install", "-y", "-q", "nginx", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (inherited by every child) as far as allowed; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_layout() -> tuple[str, str]:
    """(load generator cores, proxy cores): 0 and 1, or 0 and 0 on a single-core machine."""
    n = os.cpu_count() or 1
    return ("0", "1") if n >= 2 else ("0", "0")


def http_get(url: str, timeout: float = 5.0, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def http_json(url: str, method: str = "GET", timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def bench_rules(total: int = 5, *, top_rate: str = "1000000/s") -> list[dict[str, Any]]:
    """`total` (>= 5) rules; the benchmark path /event/item/1 matches the last one, which
    carries a ceiling and a rate far above the load. The extra rules sit in between, each
    with a literal first segment (as real configs do)."""
    head: list[dict[str, Any]] = [
        {"name": "static", "path": "/static/**", "bypass": True},
        {"name": "admin", "path": "/admin/**", "block": True},
        {"name": "api", "path": "/api/**", "methods": ["GET", "POST"], "max_active": 50000},
        {"name": "jsp", "path": "/shop/*.jsp", "max_active": 50000},
    ]
    extra: list[dict[str, Any]] = []
    for i in range(max(0, total - 5)):
        rule: dict[str, Any] = {"name": f"area{i}", "max_active": 50000}
        if i % 3 == 0:
            rule["path"] = f"/area{i}/**"
        elif i % 3 == 1:
            rule["path"] = f"/area{i}/*.do"
            rule["methods"] = ["GET", "POST"]
        else:
            rule["path"] = f"/area{i}/list/**"
            rule["rate"] = "500000/s"
        extra.append(rule)
    event = {"name": "event", "path": "/event/**", "max_active": 50000, "rate": top_rate}
    return [*head, *extra, event]


def write_guard_config(
    path: Path,
    *,
    port: int,
    admin_port: int,
    backends: Iterable[dict[str, Any]],
    rules: list[dict[str, Any]],
    access_log: Path | None,
    workers: int = 1,
    limits: dict[str, Any] | None = None,
    retry_after: str = "5s",
) -> Path:
    cfg: dict[str, Any] = {
        "listen": f"{HOST}:{port}",
        "admin_listen": f"{HOST}:{admin_port}",
        "workers": workers,
        "retry_after": retry_after,
        "access_log": {"format": "json", "path": str(access_log)}
        if access_log
        else {"format": "off"},
        "backends": list(backends),
        "rules": rules,
    }
    if limits:
        cfg["limits"] = limits
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class Guard:
    proc: Launched
    port: int
    admin_port: int
    config: Path
    access_log: Path | None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def status(self) -> Any:
        return http_json(f"http://{HOST}:{self.admin_port}/status")

    def truncate_log(self) -> None:
        if self.access_log is not None and self.access_log.exists():
            with contextlib.suppress(OSError):
                os.truncate(self.access_log, 0)


def start_guard(
    procs: Launcher,
    name: str,
    cpus: str | None,
    *,
    backends: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    workers: int = 1,
    limits: dict[str, Any] | None = None,
    log: bool = True,
) -> Guard:
    port, admin_port = free_port(), free_port()
    access_log = procs.workdir / f"{name}-access.log" if log else None
    cfg = write_guard_config(
        procs.workdir / f"{name}.yaml",
        port=port,
        admin_port=admin_port,
        backends=backends,
        rules=rules,
        access_log=access_log,
        workers=workers,
        limits=limits,
    )
    proc = procs.start_listening(name, guard_command(cfg), (port, admin_port), cpus)
    return Guard(proc, port, admin_port, cfg, access_log)


class StatusPoller:
    """Polls guard's /status in a thread and keeps the highest backend/site active seen."""

    def __init__(self, guard: Guard, interval: float = 0.05) -> None:
        self.guard = guard
        self.interval = interval
        self.max_backend: dict[str, int] = {}
        self.max_site = 0
        self.polls = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                st = self.guard.status()
                self.polls += 1
                self.max_site = max(self.max_site, int(st["site"]["active"]))
                for b in st["backends"]:
                    self.max_backend[b["name"]] = max(
                        self.max_backend.get(b["name"], 0), int(b["active"])
                    )
            except Exception:
                self.errors += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
