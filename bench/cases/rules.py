"""Rule scaling: 5 rules against 500, the matched rule last."""

from __future__ import annotations

from harness import Bench, Target, interleave, try_start
from report import fmt, md_table, median


def run(b: Bench) -> str:
    targets: dict[str, Target | str] = {
        "5 rules": try_start(b, "guard-5-rules", lambda: b.start_guard("guard-5-rules", rules=5)),
        "500 rules": try_start(
            b, "guard-500-rules", lambda: b.start_guard("guard-500-rules", rules=500)
        ),
    }
    if any(isinstance(t, str) for t in targets.values()):
        failed = next(t for t in targets.values() if isinstance(t, str))
        return f"## Rule scaling\n\nn/a: guard {failed}\n"
    samples = interleave(b, targets, "rules")
    b.data["rules"] = samples
    rps = {n: median(s["rps"] for s in samples[n]) for n in targets}
    cpu = {n: median(s["cpu_us"] for s in samples[n]) for n in targets}
    ratio = rps["500 rules"] / rps["5 rules"] if rps["500 rules"] and rps["5 rules"] else None
    table = md_table(
        ["rules", "req/s", "CPU µs/req"],
        [[n, fmt(rps[n]), fmt(cpu[n], ".1f")] for n in targets],
    )
    return (
        "## Rule scaling\n\n"
        f"{table}\n\n500 rules ÷ 5 rules throughput: **{fmt(ratio, '.2f')}** "
        "(target ≥ 0.90; the matched rule is the last one).\n"
    )
