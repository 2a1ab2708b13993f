"""Multi-worker: guard `workers: 2` against 1, on all cores."""

from __future__ import annotations

import os

from harness import Bench, Target, interleave, try_start
from procstats import tree
from report import fmt, md_table, median


def run(b: Bench) -> str:
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    targets: dict[str, Target | str] = {}
    for w in (1, 2):
        targets[f"workers: {w}"] = try_start(
            b,
            f"guard-w{w}",
            lambda w=w: b.start_guard(f"guard-w{w}", workers=w, cpus=all_cpus),
        )
    samples = interleave(b, targets, "workers")
    b.data["workers"] = samples
    rows = []
    for name, t in targets.items():
        ss = samples.get(name, [])
        if isinstance(t, str) or not ss:
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"workers/{name}: {t if isinstance(t, str) else 'no successful run'}")
            continue
        rows.append(
            [
                name,
                str(len(tree(t.proc))),
                fmt(median(s["rps"] for s in ss)),
                fmt(median(s["cpu_us"] for s in ss), ".1f"),
            ]
        )
    table = md_table(["config", "processes", "req/s", "CPU µs/req"], rows)
    r1 = median(s["rps"] for s in samples.get("workers: 1", []))
    r2 = median(s["rps"] for s in samples.get("workers: 2", []))
    ratio = fmt(r2 / r1, ".2f", "x") if r1 and r2 else "n/a"
    return (
        "## Multi-worker\n\n"
        f"guard allowed on cores {all_cpus}; wrk and the backend stay on core {b.load_cpu}, so on "
        f"a 2-core machine the second worker competes with the load generator.\n\n{table}\n\n"
        f"workers: 2 ÷ workers: 1 throughput: **{ratio}**\n"
    )
