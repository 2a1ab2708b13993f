"""guard.admin against a tiny fake runtime (the real runtime is covered end to end elsewhere)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from guard.admin import make_admin_app
from guard.core import (
    BackendView,
    DurationView,
    PairView,
    RuleView,
    SiteView,
    Snapshot,
    UpstreamErrorView,
)
from guard.reload import ReloadResult

PROBLEM = {"file": "guard.yaml", "line": 14, "key": "rules[1].rate", "message": "bad rate"}


class FakeAdmission:
    def __init__(self, active: int) -> None:
        self.active = active

    def snapshot(self) -> Snapshot:
        a = self.active
        return Snapshot(
            site=SiteView(a, None),
            backends=(BackendView("was-1", "http://127.0.0.1:8081", a, 10, True, False),),
            rules=(RuleView("default", a, None, None, {"admitted": 4}),),
            pairs=(PairView("was-1", "default", a),),
            durations=(DurationView("default", (0.1, math.inf), (3, 4), 0.25, 4),),
            upstream_errors=(UpstreamErrorView("was-1", "timeout", 1),),
        )


@dataclass
class FakeLoaded:
    path: Path
    sha256: str
    loaded_at: float


@dataclass
class FakeRuntime:
    admission: FakeAdmission = field(default_factory=lambda: FakeAdmission(2))
    loaded: FakeLoaded = field(
        default_factory=lambda: FakeLoaded(Path("/etc/guard.yaml"), "ab" * 32, 0.5)
    )
    reload_counts: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    next_ok: bool = True
    reload_calls: int = 0

    def room_views(self) -> list[dict[str, Any]]:
        return []

    def room_command(self, name: str, action: str) -> str | None:
        return None

    async def reload(self) -> ReloadResult:
        self.reload_calls += 1
        if not self.next_ok:
            self.reload_counts["failure"] += 1
            return ReloadResult(ok=False, problems=[PROBLEM])
        self.reload_counts["success"] += 1
        self.admission = FakeAdmission(7)
        self.loaded = FakeLoaded(self.loaded.path, "cd" * 32, 86_400.0)
        return ReloadResult(ok=True, summary={"backends": 1, "rules": 1})


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
async def client(runtime: FakeRuntime) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_admin_app(runtime), host="127.0.0.1")) as c:
        yield c


async def test_healthz(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.text() == "ok"


async def test_status(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/status")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["site"] == {"active": 2, "max_active": None}
    assert doc["backends"] == [
        {
            "name": "was-1",
            "url": "http://127.0.0.1:8081",
            "active": 2,
            "max_active": 10,
            "up": True,
            "draining": False,
            "orphaned": 0,
            "sticky_rerouted": 0,
        }
    ]
    assert doc["rules"] == [
        {
            "name": "default",
            "active": 2,
            "max_active": None,
            "rate": None,
            "counts": {"admitted": 4},
        }
    ]
    assert doc["config"] == {
        "path": "/etc/guard.yaml",
        "sha256": "ab" * 32,
        "loaded_at": "1970-01-01T00:00:00.500Z",
    }
    assert doc["reloads"] == {"success": 0, "failure": 0}
    # Added with the typed snapshot: what metrics export, in JSON, and the worker count.
    assert doc["pairs"] == [{"backend": "was-1", "rule": "default", "active": 2}]
    assert doc["durations"] == [
        {"rule": "default", "bounds": [0.1], "cumulative": [3], "sum": 0.25, "count": 4}
    ]
    assert doc["upstream_errors"] == [{"backend": "was-1", "kind": "timeout", "count": 1}]
    assert doc["workers"] == 1
    # The supervisor of `workers: N` reads this document back into the very snapshot.
    assert Snapshot.from_json(doc) == FakeAdmission(2).snapshot()


async def test_metrics(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(await resp.text())}
    assert {"guard_active_transactions", "guard_requests", "guard_config_reloads"} <= names


async def test_reload_success_swaps_what_is_shown(
    client: TestClient[Any, Any], runtime: FakeRuntime
) -> None:
    resp = await client.post("/reload")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["result"] == "success" and doc["summary"] == {"backends": 1, "rules": 1}
    assert doc["config"]["sha256"] == "cd" * 32
    assert doc["config"]["loaded_at"] == "1970-01-02T00:00:00.000Z"
    assert (await (await client.get("/status")).json())["site"]["active"] == 7
    metrics = await (await client.get("/metrics")).text()
    assert 'guard_config_reloads_total{result="success"} 1.0' in metrics
    assert 'guard_active_transactions{backend="was-1",rule="default"} 7.0' in metrics


async def test_reload_failure(client: TestClient[Any, Any], runtime: FakeRuntime) -> None:
    runtime.next_ok = False
    resp = await client.post("/reload", headers={"Content-Length": "0"})
    assert resp.status == 400
    assert await resp.json() == {"error": "invalid_config", "problems": [PROBLEM]}
    assert runtime.reload_counts["failure"] == 1


async def test_reload_refuses_a_body(client: TestClient[Any, Any], runtime: FakeRuntime) -> None:
    resp = await client.post("/reload", data=b"backends: []\n")
    assert resp.status == 400
    assert (await resp.json())["error"] == "body_not_accepted"

    async def chunks() -> AsyncIterator[bytes]:
        yield b"backends: []\n"

    resp = await client.post("/reload", data=chunks())  # chunked, no Content-Length
    assert resp.status == 400
    assert (await resp.json())["error"] == "body_not_accepted"
    assert runtime.reload_calls == 0


async def test_unknown_paths_and_methods(client: TestClient[Any, Any]) -> None:
    for path in ("/", "/reload/", "/metrics/x", "/admin", "/__guard/static/x"):
        assert (await client.get(path)).status == 404, path
    assert (await client.get("/reload")).status == 405
    assert (await client.post("/status")).status == 405
