"""`guard demo`: two simulated WAS instances and guard in front of them (config/demo.yaml)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from guard.serve import serve
from guard.tools.was import run_was

DEMO_WAS = (("was-1", 8081), ("was-2", 8082))


def demo_config() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base / "config" / "demo.yaml"
        if candidate.is_file():
            return candidate
    raise SystemExit("guard demo: config/demo.yaml not found (run it from the project folder)")


async def run_demo() -> int:
    path = demo_config()
    # 20 worker slots and 200 ms per request: a small Tomcat that queues when overloaded.
    runners = [await run_was("127.0.0.1", port, 20, 0.2, name) for name, port in DEMO_WAS]
    ready = asyncio.Event()
    task = asyncio.create_task(serve(path, ready))
    await ready.wait()
    print(
        "\nguard demo is up (Ctrl-C to stop):\n"
        "  proxy    http://127.0.0.1:8000/            (try /event/sale, /order/1, /admin/)\n"
        "  metrics  http://127.0.0.1:9100/metrics\n"
        "  status   http://127.0.0.1:9100/status\n"
        "  WAS      http://127.0.0.1:8081/__was/stats  http://127.0.0.1:8082/__was/stats\n"
        "  load     wrk -c 200 -d 30s http://127.0.0.1:8000/event/sale\n",
        flush=True,
    )
    try:
        return await task
    finally:
        for runner in runners:
            await runner.cleanup()
