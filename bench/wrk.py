"""Load: wrk runs (throughput, CPU per request) and bench/steady.py (latency at a fixed rate)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common import BENCH
from procstats import cpu_seconds

from guard.tools.launch import Launched, find_tool, pin_prefix


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
    proc: Launched | None,
    *,
    cpus: str | None = "0",
    headers: Sequence[str] = (),
) -> Measured:
    """One wrk run; CPU µs per request of `proc` (its whole process tree) over the run."""
    before = cpu_seconds(proc) if proc else 0.0
    result = run_wrk(url, duration, cpus=cpus, headers=headers)
    after = cpu_seconds(proc) if proc else 0.0
    cpu = (after - before) * 1e6 / result.requests if proc and result.requests else None
    return Measured(result, cpu)


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
