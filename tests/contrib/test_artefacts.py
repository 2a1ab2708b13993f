"""contrib/ (issue 12 item 7): the Grafana dashboard and the Prometheus rules an operator
imports are checked with Prometheus' own promtool and against a live scrape of a real guard,
so a metric rename, a broken expression or an alert that no longer fires fails here instead
of on sale day. Grafana itself is not run: the layout rules it applies are checked directly."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import poll_async
from tests.support.servers import StartGuard, StartWas, free_port

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
DASHBOARD = CONTRIB / "grafana" / "guard-overview.json"
RULES = CONTRIB / "prometheus" / "guard-rules.yml"
RULES_TEST = CONTRIB / "prometheus" / "guard-rules.test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ROWS = ["Now", "Active", "Outcomes", "Latency", "Backends", "Waiting room", "Process"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of its variables, for parsing only.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$rule": ".*",
    "$backend": ".*",
}
# The waiting room's metrics are being added on another branch (room2) while this dashboard
# is written: these names, and only in the "Waiting room" row, may be missing from a scrape,
# and only while guard exports no guard_room_* family at all. Once it does, every name must
# match (a rename fails here); then delete this set.
ROOM_ROW_ONLY = {
    "guard_room_waiting",
    "guard_room_admitted_total",
    "guard_room_eta_seconds",
    "guard_room_passes_in_flight",
    "guard_room_tokens_rejected_total",
}
METRIC_NAME = re.compile(r"\b(?:guard|process)_[a-z0-9_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # No skip when promtool is missing: .ci/run installs it (Debian's `prometheus`).
    assert Path(PROMTOOL).exists(), f"promtool not found at {PROMTOOL}: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels_by_row(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(row title, panel) for every panel that is not a row header, in layout order."""
    row = ""
    for panel in doc["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        else:
            yield row, panel


def dashboard_exprs(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(row, where, expr) for every PromQL expression: targets and annotations."""
    for row, panel in panels_by_row(doc):
        for target in panel["targets"]:
            yield row, f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in doc["annotations"]["list"]:
        if "expr" in annotation:
            yield "", f"annotation {annotation['name']!r}", annotation["expr"]


def rules_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def test_the_dashboard_is_a_classic_model_with_the_agreed_frame() -> None:
    doc = dashboard()
    assert (doc["uid"], doc["id"], doc["refresh"]) == ("guard-overview", None, "10s")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert list(variables) == ["datasource", "instance", "rule", "backend"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "rule", "backend"):
        assert variables[name]["query"]["query"].startswith("label_values(guard_")
        assert variables[name]["datasource"] == DATASOURCE
    reloads = [
        a for a in doc["annotations"]["list"] if "guard_config_reloads_total" in a.get("expr", "")
    ]
    assert reloads, "no config-reload annotation"
    assert [p["title"] for p in doc["panels"] if p["type"] == "row"] == ROWS


def test_panels_have_unique_ids_and_tile_24_columns_without_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']!r} ends past column 24: {g}"
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for (a, ax0, ay0, ax1, ay1), (b, bx0, by0, bx1, by1) in combinations(boxes, 2):
        overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
        assert not overlap, f"panels {a!r} and {b!r} overlap"


def test_every_panel_and_target_uses_the_datasource_variable() -> None:
    doc = dashboard()
    for _, panel in panels_by_row(doc):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
    for annotation in doc["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE, annotation["name"]


def test_every_dashboard_expression_parses_with_promtool(tmp_path: Path) -> None:
    rules = []
    for i, (_, where, expr) in enumerate(dashboard_exprs(dashboard())):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    assert len(rules) > 30
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = promtool("check", "config", str(CONTRIB / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    alerts = {name for name, _ in rules_exprs() if name[0].isupper()}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts >= {
        "GuardBackendSaturated", "GuardShedding", "GuardBackendDown", "GuardNoBackendUp",
        "GuardSlowRequests", "GuardUpstreamErrors", "GuardReloadFailed",
        "GuardLogLinesDropped", "GuardDown",
    }  # fmt: skip
    assert alerts - fired == set(), "alerts no test sees firing"


def test_compose_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((CONTRIB / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (CONTRIB / source).exists(), f"docker-compose mounts missing {source}"
    provisioning = CONTRIB / "grafana" / "provisioning"
    for path in provisioning.rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path


async def live_scrape(start_was: StartWas, start_guard: StartGuard) -> tuple[set[str], set[str]]:
    """Family and sample names of a real guard with a site ceiling, backends, rules and a
    waiting room, after traffic and one failed exchange (upstream error series appear only
    once counted)."""
    was = await start_was("was-1")
    guard = await start_guard(
        f"""
        max_active: 20
        backends:
          - {{name: was-1, url: '{was.url}', max_active: 8}}
          - {{name: gone, url: 'http://127.0.0.1:{free_port()}', max_active: 4, cooldown: 60s}}
        rules:
          - {{name: shop, path: /shop/**, max_active: 6}}
          - {{name: event, path: /event/**, max_active: 2, room: sale}}
        rooms:
          - {{name: sale, admit_rate: 4/s, place_hold: 3s, refresh_min: 100ms, refresh_max: 1s}}
        """
    )
    scrape = ""

    async def an_upstream_error_is_counted() -> bool:
        nonlocal scrape
        async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/shop/item") as r:
            assert r.status == 200  # a GET is retried on the live backend
        scrape = await guard.metrics()
        return "guard_upstream_errors_total{" in scrape

    await poll_async(an_upstream_error_is_counted, why="no connect error to the dead backend")
    families = list(text_string_to_metric_families(scrape))
    return {f.name for f in families}, {s.name for f in families for s in f.samples}


async def test_every_metric_name_used_exists_in_a_live_scrape(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    families, scraped = await live_scrape(start_was, start_guard)
    used: dict[str, set[str]] = {}  # name -> where
    doc = dashboard()
    for row, where, expr in dashboard_exprs(doc):
        for name in METRIC_NAME.findall(expr):
            used.setdefault(name, set()).add(f"{row}: {where}")
    for variable in doc["templating"]["list"][1:]:
        for name in METRIC_NAME.findall(variable["query"]["query"]):
            used.setdefault(name, set()).add(f"variable {variable['name']}")
    for rule, expr in rules_exprs():
        for name in METRIC_NAME.findall(expr):
            used.setdefault(name, set()).add(f"rule {rule}")
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for series in test["input_series"]:
            for name in METRIC_NAME.findall(series["series"].split("{", 1)[0]):
                used.setdefault(name, set()).add("rules test input")
    missing = {name: where for name, where in used.items() if name not in scraped}
    rooms_exported = any(f.startswith("guard_room_") for f in families)
    tolerable = set() if rooms_exported else ROOM_ROW_ONLY
    tolerated = {n: w for n, w in missing.items() if n in tolerable}
    assert all(w.startswith("Waiting room: ") for ws in tolerated.values() for w in ws), tolerated
    assert missing.keys() - tolerable == set(), {n: missing[n] for n in missing.keys() - tolerable}
    assert {"guard_backend_max_active", "guard_request_duration_seconds_bucket"} <= scraped
