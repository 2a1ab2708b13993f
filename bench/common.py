"""Shared helpers for the benchmark: processes, ports, pinning, wrk, configs, tables.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HOST = "127.0.0.1"
BODY_SIZE = 1024


class StartFailed(RuntimeError):
    """A server under test did not come up; the message carries its log tail."""


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


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


def pin_prefix(cpus: str | None) -> list[str]:
    if cpus is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", cpus]


def cpu_layout() -> tuple[str, str]:
    """(load generator cores, proxy cores): 0 and 1, or 0 and 0 on a single-core machine."""
    n = os.cpu_count() or 1
    return ("0", "1") if n >= 2 else ("0", "0")


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: Proc | None = None, timeout: float = 15.0) -> None:
    """Poll until something accepts on the port; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise StartFailed(f"{proc.name} exited with {proc.popen.returncode}: {proc.log_tail()}")
        if port_open(port):
            return
        time.sleep(0.02)
    name = proc.name if proc else "server"
    tail = proc.log_tail() if proc else ""
    raise StartFailed(f"{name} did not listen on {HOST}:{port} within {timeout}s: {tail}")


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


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def tree(self) -> list[psutil.Process]:
        try:
            p = psutil.Process(self.pid)
            return [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def pin(self, cpus: str) -> None:
        cores = parse_cpus(cpus)
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, OSError):
                p.cpu_affinity(cores)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        # Each server runs in its own session: signal its group (nginx master + workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def parse_cpus(cpus: str) -> list[int]:
    out: list[int] = []
    for part in cpus.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


@dataclass
class Procs:
    """Every process the benchmark starts; stop_all() in a finally."""

    workdir: Path
    items: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        cpus: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [*pin_prefix(cpus), *cmd],
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.items.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.items:
            self.items.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            with contextlib.suppress(Exception):
                proc.stop()
        self.items.clear()


# --------------------------------------------------------------------------- nginx


def _nginx_common(workdir: Path, tag: str) -> tuple[str, Path]:
    temp = workdir / f"{tag}-temp"
    temp.mkdir(exist_ok=True)
    return (
        f"""
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/{tag}.pid;
error_log {workdir}/{tag}-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
""",
        temp,
    )


def nginx_backend_conf(workdir: Path, port: int, body_size: int = BODY_SIZE) -> Path:
    head, temp = _nginx_common(workdir, "backend")
    body = "x" * (body_size - 1) + "\\n"
    conf = (
        head
        + f"""
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""
    )
    path = workdir / "backend.conf"
    path.write_text(conf)
    return path


def nginx_proxy_conf(workdir: Path, port: int, upstream_port: int, tag: str = "nginx") -> Path:
    head, temp = _nginx_common(workdir, tag)
    conf = (
        head
        + f"""
http {{
  access_log {workdir}/{tag}-access.log combined buffer=64k flush=1s;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  upstream backend {{
    server {HOST}:{upstream_port};
    keepalive 64;
    keepalive_requests 10000000;
  }}
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    path = workdir / f"{tag}.conf"
    path.write_text(conf)
    return path


def nginx_cmd(conf: Path) -> list[str]:
    nginx = find_tool("nginx") or "nginx"
    return [
        nginx,
        "-e",
        str(conf.parent / "nginx-startup-error.log"),
        "-p",
        str(conf.parent),
        "-c",
        str(conf),
    ]


def nginx_version() -> str:
    nginx = find_tool("nginx")
    if nginx is None:
        return "?"
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).strip().split("/")[-1]


# --------------------------------------------------------------------------- guard


def guard_bin() -> str:
    sibling = Path(sys.executable).parent / "guard"
    return str(sibling if sibling.exists() else ROOT / ".venv" / "bin" / "guard")


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
        "waiting_page": str(ROOT / "static" / "waiting.html"),
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
    proc: Proc
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
    procs: Procs,
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
    proc = procs.start(name, [guard_bin(), "run", "-c", str(cfg)], cpus)
    try:
        wait_port(port, proc)
        wait_port(admin_port, proc)
    except StartFailed:
        procs.stop(proc)
        raise
    return Guard(proc, port, admin_port, cfg, access_log)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    non2xx: int
    socket_errors: int
    p50_ms: float | None
    p99_ms: float | None
    raw: str

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> WrkResult:
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m or not rps:
        raise ValueError(f"cannot parse wrk output:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    pct = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m))\s*$", text, re.M))
    return WrkResult(
        requests=int(m.group(1)),
        seconds=_ms(m.group(2) + m.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(x) for x in errs.groups()) if errs else 0,
        p50_ms=_ms(pct["50"]) if "50" in pct else None,
        p99_ms=_ms(pct["99"]) if "99" in pct else None,
        raw=text,
    )


def run_wrk(
    url: str,
    duration: float,
    *,
    connections: int = 64,
    cpus: str | None = "0",
    headers: Sequence[str] = (),
) -> WrkResult:
    wrk = find_tool("wrk") or "wrk"
    cmd = [
        *pin_prefix(cpus),
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=False, timeout=duration + 60
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


@dataclass
class Measured:
    wrk: WrkResult
    cpu_us_per_req: float | None


def measure(
    url: str,
    duration: float,
    proc: Proc | None,
    *,
    cpus: str | None = "0",
    headers: Sequence[str] = (),
) -> Measured:
    """One wrk run; CPU µs per request of `proc` (its whole process tree) over the run."""
    before = proc.cpu_seconds() if proc else 0.0
    result = run_wrk(url, duration, cpus=cpus, headers=headers)
    after = proc.cpu_seconds() if proc else 0.0
    cpu = (after - before) * 1e6 / result.requests if proc and result.requests else None
    return Measured(result, cpu)


# --------------------------------------------------------------------------- steady latency


def run_steady(url: str, rate: float, duration: float, cpus: str | None = "0") -> dict[str, Any]:
    cmd = [
        *pin_prefix(cpus),
        sys.executable,
        str(BENCH / "steady.py"),
        "--url",
        url,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"steady.py failed: {out.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- status poller


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


# --------------------------------------------------------------------------- reporting


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = find_tool("wrk")
    wrk_v = "?"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_v = (out.stdout + out.stderr).split()[1] if (out.stdout + out.stderr).split() else "?"
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": nginx_version(),
        "wrk": wrk_v,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
