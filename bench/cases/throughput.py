"""Throughput and latency: direct, nginx, guard and the aiohttp proxy, interleaved.

Each round runs wrk against every setup (order rotated), then probes latency at a steady
rate with bench/steady.py. The backend sits on the proxy's core only for "direct"."""

from __future__ import annotations

from typing import Any

from harness import PATH, SETUPS, Bench, Target, rotated, try_start
from report import fmt, md_table, median
from wrk import run_steady

LABELS = {
    "direct": "direct to backend (nginx, 1 KiB)",
    "nginx": "nginx reverse proxy, 1 worker, keep-alive",
    "guard": "guard, full policy (5 rules, access log)",
    "aiohttp": "minimal aiohttp proxy (uvloop)",
}
Samples = dict[str, list[dict[str, Any]]]
Medians = dict[str, dict[str, float | None]]


def run(b: Bench) -> str:
    names = [s for s in b.args.setups if s in SETUPS]
    targets: dict[str, Target | str] = {}
    for name in names:
        targets[name] = try_start(b, name, lambda name=name: b.start_setup(name))
    samples = measure_rounds(b, names, targets)
    med = {
        n: {k: median(s[k] for s in samples[n]) for k in ("rps", "cpu_us", "p50_ms", "p99_ms")}
        for n in names
    }
    b.data["throughput"] = {
        "samples": samples,
        "failed": {n: t for n, t in targets.items() if isinstance(t, str)},
        "medians": med,
    }
    per_round = "\n".join(
        f"- {n}: " + ", ".join(f"{s['rps']:,.0f}" for s in samples[n]) + " req/s"
        for n in names
        if samples[n]
    )
    return (
        "## Throughput and latency (medians)\n\n"
        f"{table(b, names, targets, med)}\n\n"
        "CPU µs/req is the proxy's process tree (for direct: the backend's). "
        "Latency: bench/steady.py at a constant rate, "
        "added latency in parentheses is over direct.\n\n"
        f"Per-round req/s:\n{per_round}\n"
    )


def measure_rounds(b: Bench, names: list[str], targets: dict[str, Target | str]) -> Samples:
    samples: Samples = {n: [] for n in names}
    live = [n for n in names if isinstance(targets[n], Target)]
    for r in range(b.args.rounds):
        for name in rotated(live, r):
            target = targets[name]
            assert isinstance(target, Target)
            b.place_backend(direct=name == "direct")
            try:
                s = sample(b, target, f"throughput/{name} round {r + 1}")
            except Exception as e:
                b.notes.append(f"throughput/{name} round {r + 1}: {e}")
                continue
            finally:
                b.place_backend(direct=False)
            samples[name].append(s)
            b.log(
                f"  [throughput {r + 1}/{b.args.rounds}] {name:<8} {s['rps']:>10,.0f} req/s "
                f"{fmt(s['cpu_us'], '.1f')} µs/req  p50 {s['p50_ms']:.3f} p99 {s['p99_ms']:.3f} ms"
            )
    return samples


def sample(b: Bench, target: Target, label: str) -> dict[str, Any]:
    """One wrk run, then the steady-rate latency probe."""
    s = b.wrk_sample(target)
    steady = run_steady(target.url + PATH, b.args.rate, b.args.steady_duration, cpus=b.load_cpu)
    s.update(p50_ms=steady["p50_ms"], p99_ms=steady["p99_ms"], steady=steady)
    if steady["errors"] or steady["non2xx"] or steady["stalls"]:
        b.notes.append(f"{label}: steady probe {steady}")
    return s


def table(b: Bench, names: list[str], targets: dict[str, Target | str], med: Medians) -> str:
    ref = med.get("nginx", {}).get("rps")
    direct = med.get("direct", {})

    def lat(n: str, key: str) -> str:
        v = med[n][key]
        if v is None:
            return "n/a"
        base = direct.get(key)
        if n == "direct" or base is None:
            return f"{v:.2f} ms"
        return f"{v:.2f} ms (+{v - base:.2f})"

    rows = []
    for n in names:
        rps = med[n]["rps"]
        if isinstance(targets[n], str) or rps is None:
            why = targets[n] if isinstance(targets[n], str) else "no successful run"
            rows.append([LABELS[n], "n/a", "n/a", "n/a", "n/a", "n/a"])
            b.notes.append(f"throughput/{n}: {why}")
            continue
        share = fmt(100 * rps / ref, ".0f", "%") if ref else "n/a"
        cpu = fmt(med[n]["cpu_us"], ".1f")
        rows.append([LABELS[n], fmt(rps), share, cpu, lat(n, "p50_ms"), lat(n, "p99_ms")])
    return md_table(
        ["setup", "req/s", "share of nginx", "CPU µs/req", "p50 at 1k req/s", "p99 at 1k req/s"],
        rows,
    )
