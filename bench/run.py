"""guard's benchmark: guard side by side with nginx and a minimal aiohttp proxy, on loopback.

One command (from the repository root):

    make bench                 # = .venv/bin/python bench/run.py  (every case, ~8 minutes)

Options:

    --case NAME        throughput | shedding | rules | idle | workers | queue | cluster | all
                       (default all);
                       repeat the flag or give a comma list
    --rounds N         repeated interleaved rounds, medians reported (default 3)
    --duration S       seconds per wrk run (default 10)
    --setups LIST      throughput setups (default direct,nginx,guard,aiohttp)
    --rate R / --steady-duration S   steady-rate latency probe (default 1000 req/s for 5 s)
    --idle-conns N     idle keep-alive connections for the idle case (default 10000)
    --keep             keep the temp dir (configs, logs) and print its path

Quick check of the harness: `.venv/bin/python bench/run.py --case throughput --rounds 1
--duration 3 --setups direct,nginx`.

What it does. Installs nginx and wrk with apt-get if missing (sudo when not root). Starts a
backend: nginx, 1 worker, answering every path with a 1 KiB body. Then, for each round and
each setup in turn (the order rotates every round), runs wrk (1 thread, 64 keep-alive
connections, pinned with `taskset -c 0`) against the setup with the proxy pinned to core 1,
reads the proxy's CPU time (its whole process tree, psutil) before and after, and probes
latency at a steady 1,000 req/s with bench/steady.py (also on core 0). The backend sits on
core 0 beside the load generator while a proxy is measured, and on core 1 (the proxy's seat)
for "direct". Setups:

- direct:  wrk -> backend
- nginx:   nginx reverse proxy, 1 worker, upstream keep-alive 64, buffered access log
- guard:   `guard run -c <generated yaml>`: full policy (5 rules, the matched one with a
           ceiling and a rate far above the load; backend max_active 10000; JSON access log)
- aiohttp: bench/aiohttp_proxy.py, aiohttp server + ClientSession on uvloop (Python's floor)

Cases: `shedding` (backend max_active 8 in front of a slow simulated WAS: refusals per
second, JSON and waiting page, against guard's own proxied rate; the backend's concurrency is
checked both from guard's /status and from the WAS's own max_seen_active), `rules` (5 vs 500
rules), `idle` (RSS per idle keep-alive connection at 10,000 connections, guard, nginx and the
aiohttp proxy), `workers` (guard `workers: 2` vs 1 on all cores; "n/a" if unsupported),
`queue` (a waiting room: queued shoppers polling and new shoppers issued places, against
guard's proxied rate in the same process; target ≥ 1.5x).
`cluster` (three instances on one Redis before a slow WAS, uneven load: cases/cluster.py).

Results: a markdown table of medians on stdout and in bench/results/latest.md (raw samples in
bench/results/latest.json). A benchmark, not a test: nothing here fails CI. Loopback only.
Noise on a 2 vCPU VM is +-10-15%: compare ratios from the same run, not runs across days.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil
from cases import (  # bench/ is sys.path[0]
    cluster,
    idle,
    queue,
    rules,
    shedding,
    throughput,
    workers,
)
from common import BENCH, cpu_layout, ensure_tools, raise_nofile
from harness import SETUPS, Bench
from report import machine_info

from guard.tools.launch import Launcher

CASE_FUNCS: dict[str, Callable[[Bench], str]] = {
    "throughput": throughput.run,
    "shedding": shedding.run,
    "rules": rules.run,
    "idle": idle.run,
    "workers": workers.run,
    "queue": queue.run,
    "cluster": cluster.run,
}
CASES = tuple(CASE_FUNCS)


# ==================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="guard benchmark (see the module docstring)")
    p.add_argument("--case", action="append", default=None, help="case name(s) or all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured wrk seconds first")
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--steady-duration", type=float, default=5.0)
    p.add_argument("--idle-conns", type=int, default=10000)
    p.add_argument("--no-install", action="store_true", help="do not apt-get install")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "latest.md")
    args = p.parse_args(argv)
    cases: list[str] = []
    for item in args.case or ["all"]:
        for c in item.split(","):
            cases.extend(CASES if c == "all" else [c])
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}, all")
    args.cases = list(dict.fromkeys(cases))
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    bad = [s for s in args.setups if s not in SETUPS]
    if bad:
        p.error(f"unknown setup(s) {bad}; choose from {', '.join(SETUPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile(max(65536, args.idle_conns * 2 + 1000))
    if not args.no_install:
        ensure_tools()
    load_cpu, proxy_cpu = cpu_layout()
    busy_before = psutil.cpu_percent(interval=1.0)  # other work on the machine skews everything
    workdir = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    workdir.chmod(0o755)  # nginx workers drop to an unprivileged user when run as root
    b = Bench(args, Launcher(workdir), load_cpu, proxy_cpu)
    sections = run_cases(b, workdir)
    if busy_before > 10:
        b.notes.insert(
            0,
            f"the machine was {busy_before:.0f}% busy just before the run; other processes "
            "skew every figure: rerun on an idle machine",
        )
    cmdline = " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    write_report(b, sections, cmdline, nofile, busy_before)
    return 0


def run_cases(b: Bench, workdir: Path) -> list[str]:
    """Every case in turn on one backend; a failed case becomes a section saying so."""
    args = b.args
    sections: list[str] = []
    try:
        b.start_backend()
        for case in args.cases:
            b.log(f"== {case}")
            try:
                sections.append(CASE_FUNCS[case](b))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"## {case}\n\nfailed: {e}\n")
            finally:
                for proc in [p for p in b.procs.items if p is not b.backend]:
                    b.procs.stop(proc)
    finally:
        b.procs.stop_all()
        if args.keep:
            b.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return sections


def write_report(
    b: Bench, sections: list[str], cmdline: str, nofile: int, busy_before: float
) -> None:
    """The markdown report on stdout and in --out, the raw samples next to it as JSON."""
    args, load_cpu, proxy_cpu = b.args, b.load_cpu, b.proxy_cpu
    info = machine_info()
    header = (
        "# guard benchmark — latest run\n\n"
        f"Machine: {info['cpu']}, {info['memory']}, Linux {info['kernel']}; "
        f"Python {info['python']}, nginx {info['nginx']}, wrk {info['wrk']}; {info['date']}.\n\n"
        f"Loopback; backend nginx (1 worker) returning 1 KiB; wrk 1 thread, 64 keep-alive "
        f"connections, {args.duration:g} s per run after {args.warmup:g} s warm-up, pinned to core "
        f"{load_cpu}; proxy pinned to core {proxy_cpu}; median of {args.rounds} interleaved "
        f"round(s); RLIMIT_NOFILE {nofile}; CPU {busy_before:.0f}% busy before the run. "
        f"This run: `.venv/bin/python {cmdline}`; "
        "the full default run: `make bench`.\n"
    )
    notes = "\n".join(f"- {n}" for n in dict.fromkeys(b.notes))
    report = header + "\n" + "\n".join(sections) + (f"\n## Notes\n\n{notes}\n" if notes else "")
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": info,
                "data": b.data,
                "notes": b.notes,
            },
            indent=1,
            default=str,
        )
    )
    b.log(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
