"""`guard demo`: two simulated WAS instances and guard in front of them.

The config is the demo.yaml shipped inside the package (config/demo.yaml in the source
tree), so the demo runs from any directory. `--port-base N` moves its four ports (proxy,
admin, was-1, was-2) to N..N+3, for a machine where 8000/9100/8081/8082 are taken.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aiohttp import web

from guard.serve import BindError, serve
from guard.tools.was import run_was

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "demo.yaml"
DEFAULT_PORTS = (8000, 9100, 8081, 8082)  # proxy, admin, was-1, was-2: as in demo.yaml


def demo_text(ports: tuple[int, int, int, int]) -> str:
    text = DEMO_CONFIG.read_text()
    for old, new in zip(DEFAULT_PORTS, ports, strict=True):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    return text


async def run_demo(
    port_base: int | None = None,
    surge: bool = False,
    duration: float = 10.0,
    rate: float | None = None,
) -> int:
    if surge:  # the same surge without guard and with it, side by side (demo_surge)
        from guard.tools.demo_surge import run_surge_demo

        return await run_surge_demo(port_base, duration, rate)
    ports = DEFAULT_PORTS if port_base is None else tuple(port_base + i for i in range(4))
    proxy, admin, was_1, was_2 = ports
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as folder:
        path = Path(folder) / "demo.yaml"
        path.write_text(demo_text((proxy, admin, was_1, was_2)))
        runners = await _start_was((("was-1", was_1), ("was-2", was_2)))
        ready = asyncio.Event()
        task = asyncio.create_task(serve(path, ready))
        started = asyncio.create_task(ready.wait())
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # it could not start (a port in use): say why, not hang
            started.cancel()
            for runner in runners:
                await runner.cleanup()
            return task.result()
        print(
            "\nguard demo is up (Ctrl-C to stop):\n"
            f"  proxy    http://127.0.0.1:{proxy}/  (try /event/sale, /order/1, /admin/)\n"
            f"  metrics  http://127.0.0.1:{admin}/metrics\n"
            f"  status   http://127.0.0.1:{admin}/status\n"
            f"  WAS      http://127.0.0.1:{was_1}/__was/stats  http://127.0.0.1:{was_2}/__was/stats\n"
            f"  load     wrk -c 200 -d 30s http://127.0.0.1:{proxy}/event/sale\n"
            "  story    guard demo --surge  (a surge without guard, then with it, side by side)\n",
            flush=True,
        )
        try:
            return await task
        finally:
            for runner in runners:
                await runner.cleanup()


async def _start_was(named_ports: tuple[tuple[str, int], ...]) -> list[web.AppRunner]:
    """20 worker slots and 200 ms per request each: a small Tomcat that queues when
    overloaded. A port in use is one line for the operator, like guard's own listeners."""
    runners: list[web.AppRunner] = []
    for name, port in named_ports:
        try:
            runners.append(await run_was("127.0.0.1", port, 20, 0.2, name))
        except OSError as err:
            for runner in runners:
                await runner.cleanup()
            raise BindError("--port-base", f"127.0.0.1:{port} ({name})", err) from None
    return runners
