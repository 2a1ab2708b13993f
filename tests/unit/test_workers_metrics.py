"""The supervisor's /metrics merge: sums per sample, ratios recomputed, families grouped."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from guard.workers import merge_metrics

WORKER_0 = """\
# HELP guard_backend_active Requests in flight on each backend.
# TYPE guard_backend_active gauge
guard_backend_active{backend="was-1"} 2.0
# HELP guard_backend_max_active Each backend's ceiling (max_active).
# TYPE guard_backend_max_active gauge
guard_backend_max_active{backend="was-1"} 3.0
# HELP guard_utilization Active requests / ceiling.
# TYPE guard_utilization gauge
guard_utilization{name="was-1",scope="backend"} 0.6666666666666666
"""
# Mid-reload: this worker already knows was-2, and holds nothing on was-1.
WORKER_1 = """\
# HELP guard_backend_active Requests in flight on each backend.
# TYPE guard_backend_active gauge
guard_backend_active{backend="was-1"} 0.0
guard_backend_active{backend="was-2"} 1.0
# HELP guard_backend_max_active Each backend's ceiling (max_active).
# TYPE guard_backend_max_active gauge
guard_backend_max_active{backend="was-1"} 3.0
guard_backend_max_active{backend="was-2"} 4.0
# HELP guard_utilization Active requests / ceiling.
# TYPE guard_utilization gauge
guard_utilization{name="was-1",scope="backend"} 0.0
guard_utilization{name="was-2",scope="backend"} 0.25
"""


def test_ratios_are_recomputed_from_the_sums_and_families_stay_grouped() -> None:
    merged = merge_metrics([WORKER_0, WORKER_1])
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged)
        for s in family.samples
    }
    assert values[("guard_backend_active", (("backend", "was-1"),))] == 2.0
    assert values[("guard_backend_max_active", (("backend", "was-1"),))] == 6.0
    assert values[("guard_utilization", (("name", "was-1"), ("scope", "backend")))] == 2 / 6
    assert values[("guard_utilization", (("name", "was-2"), ("scope", "backend")))] == 1 / 4
    lines = merged.splitlines()
    was2 = lines.index('guard_backend_active{backend="was-2"} 1.0')
    assert lines[was2 - 1].startswith("guard_backend_active{")  # within its family
    assert sum(line.startswith("# TYPE") for line in lines) == 3
