"""CPU time, memory and CPU pinning of a launched server's whole process tree (psutil)."""

from __future__ import annotations

import contextlib

import psutil

from guard.tools.launch import Launched


def tree(proc: Launched) -> list[psutil.Process]:
    """The server and its children (nginx workers, guard's `workers: N`)."""
    try:
        p = psutil.Process(proc.pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(proc: Launched) -> float:
    total = 0.0
    for p in tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss(proc: Launched) -> int:
    total = 0
    for p in tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def pin(proc: Launched, cpus: str) -> None:
    """Move the running tree to `cpus` (taskset at launch only pins the first process's
    future children; the benchmark moves the backend between cores)."""
    cores = parse_cpus(cpus)
    for p in tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess, OSError):
            p.cpu_affinity(cores)


def parse_cpus(cpus: str) -> list[int]:
    """ "0,2-3" -> [0, 2, 3]."""
    out: list[int] = []
    for part in cpus.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out
