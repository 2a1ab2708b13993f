"""`guard run | check | demo | surge` — the one place with sys.exit, logging and the loop choice."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from guard.config import ConfigError, load_config, summarize

DEFAULT_CONFIG = Path("config/guard.yaml")
log = logging.getLogger("guard")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="guard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "serve"), ("check", "validate the config like nginx -t")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    sub.add_parser("demo", help="two simulated WAS instances with guard in front")
    from guard.tools.surge_args import add_arguments as add_surge_arguments

    add_surge_arguments(sub.add_parser("surge", help="flash-sale load generator (loopback)"))
    from guard.tools.rehearse import add_arguments as add_rehearse_arguments

    add_rehearse_arguments(sub.add_parser("rehearse", help="replay a log through a config, dry"))
    worker = sub.add_parser("worker")  # started by the supervisor when workers > 1
    worker.add_argument("-c", "--config", type=Path, required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--of", type=int, required=True)
    worker.add_argument("--admin-socket", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("GUARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "check":
        sys.exit(check(args.config))
    if args.command == "rehearse":
        from guard.tools.rehearse import run_rehearse

        sys.exit(run_rehearse(args))
    require_c_parsers()
    raise_fd_limit()
    tune_gc()
    if args.command == "run":
        sys.exit(run(args.config))
    if args.command == "surge":
        from guard.tools.surge import run_surge

        sys.exit(run_loop(run_surge(args)))
    if args.command == "worker":
        from guard.serve import serve

        share = (args.index, args.of)
        sys.exit(run_loop(serve(args.config, share=share, admin_socket=args.admin_socket)))
    from guard.tools.demo import run_demo

    sys.exit(run_loop(run_demo()))


def check(path: Path) -> int:
    try:
        loaded = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    print(summarize(loaded))
    return 0


def require_c_parsers() -> None:
    """Refuse to start on the pure-Python HTTP parsers: most past smuggling advisories
    were in aiohttp's Python parser, and the data path needs httptools' llhttp."""
    try:
        import httptools  # noqa: F401
        from aiohttp import http_parser
    except ImportError as err:
        sys.exit(f"guard: the C HTTP parser is unavailable ({err}); install httptools")
    if os.environ.get("AIOHTTP_NO_EXTENSIONS") or http_parser.HttpRequestParser is getattr(
        http_parser, "HttpRequestParserPy", None
    ):
        sys.exit(
            "guard: aiohttp's C parser is unavailable (AIOHTTP_NO_EXTENSIONS is set or the "
            "extension failed to build); refusing to start on the lenient pure-Python parser"
        )


def tune_gc() -> None:
    """Per-request objects are freed by reference counting; the cycle collector only needs
    to run now and then. Python's default (every 700 allocations) costs ~1.5 µs/request."""
    import gc

    gc.set_threshold(50_000, 20, 20)


def raise_fd_limit() -> None:
    """Every client and backend connection is a file descriptor; the usual soft limit of
    1024 would cap guard far below limits.max_connections."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-file limit from %s: %s", soft, err)


def run(path: Path) -> int:
    try:
        workers = load_config(path).config.workers
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    if workers > 1:
        from guard.workers import supervise

        return run_loop(supervise(path, workers))
    from guard.serve import serve

    return run_loop(serve(path))


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux development machines
        return asyncio.run(coro)
    return int(uvloop.run(coro))


if __name__ == "__main__":
    main()
