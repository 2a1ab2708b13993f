"""Metrics an operator can divide (issue 10 item 7): the utilisation of every ceiling is one
PromQL expression away, checked by Prometheus' own promtool on a real scrape of a running
guard with requests held in flight; the scrape passes `promtool check metrics`; the
duration histogram has the 3 s and 8 s edges ops teams use."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import Guard, StartGuard, StartWas, Was

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HELD = 3  # requests held in the WAS: 3 of event's 4, of was-1's 6, of the site's 10


async def guard_with_held_requests(
    start_was: StartWas, start_guard: StartGuard
) -> tuple[Guard, Was, list[asyncio.Task[int]]]:
    was = await start_was()
    guard = await start_guard(
        f"""
        max_active: 10
        backends:
          - {{name: was-1, url: '{was.url}', max_active: 6}}
        rules:
          - {{name: event, path: /__was/hold, max_active: 4}}
          - {{name: open, path: /open/**}}
        """
    )

    async def one() -> int:
        async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/__was/hold") as r:
            return r.status

    held = [asyncio.create_task(one()) for _ in range(HELD)]
    await was.wait_active(HELD)
    return guard, was, held


def input_series(scrape: str) -> list[dict[str, str]]:
    """Every scraped sample as a constant promtool input series (`name{labels}`)."""
    series = []
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            series.append({"series": f"{sample.name}{{{labels}}}", "values": f"{sample.value}x5"})
    return series


def promql_test(
    series: list[dict[str, str]], expr: str, expected: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "2m", "exp_samples": expected}],
    }


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


async def test_each_utilisation_is_one_promql_division(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    guard, was, held = await guard_with_held_requests(start_was, start_guard)
    try:
        scrape = await guard.metrics()
    finally:
        await was.release()
        assert await asyncio.gather(*held) == [200] * HELD
    series = input_series(scrape)
    tests = [
        promql_test(
            series,
            "guard_backend_active / guard_backend_max_active",
            [{"labels": '{backend="was-1"}', "value": HELD / 6}],
        ),
        # Rules without a ceiling have no max series, so they drop out of the division.
        promql_test(
            series,
            "guard_rule_active / guard_rule_max_active",
            [{"labels": '{rule="event"}', "value": HELD / 4}],
        ),
        promql_test(
            series,
            "guard_site_active / guard_site_max_active",
            [{"labels": "{}", "value": HELD / 10}],
        ),
        promql_test(
            series,
            "guard_utilization",
            [
                {"labels": 'guard_utilization{scope="site",name="site"}', "value": HELD / 10},
                {"labels": 'guard_utilization{scope="backend",name="was-1"}', "value": HELD / 6},
                {"labels": 'guard_utilization{scope="rule",name="event"}', "value": HELD / 4},
            ],
        ),
    ]
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": []}))
    test_file = tmp_path / "ratios.test.yml"
    test_file.write_text(json.dumps({"rule_files": ["rules.yml"], "tests": tests}))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_scrape_passes_promtool_check_metrics(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was, held = await guard_with_held_requests(start_was, start_guard)
    try:
        scrape = await guard.metrics()
    finally:
        await was.release()
        await asyncio.gather(*held)
    result = promtool("check", "metrics", stdin=scrape)
    assert result.returncode == 0, result.stdout + result.stderr
    # The 3 s and 8 s marks are exact bucket edges (slow / very slow shares in PromQL).
    assert 'guard_request_duration_seconds_bucket{le="3.0",rule="event"}' in scrape
    assert 'guard_request_duration_seconds_bucket{le="8.0",rule="event"}' in scrape
    # The old names stay, for dashboards built on them.
    assert 'guard_max_active{name="was-1",scope="backend"} 6.0' in scrape
    assert 'guard_active_transactions{backend="was-1",rule="event"}' in scrape
