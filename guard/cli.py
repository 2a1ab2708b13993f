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
DESCRIPTION = (
    "guard: a traffic guard in front of your WAS fleet. It counts the requests in flight per "
    "backend, URL rule and site, and answers the excess itself with a waiting page."
)
log = logging.getLogger("guard")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("guard")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="guard", description=DESCRIPTION)
    top.add_argument("--version", action="version", version=f"guard {version()}")
    # metavar lists the commands for users; `worker` is started by the supervisor only.
    sub = top.add_subparsers(
        dest="command", required=True, metavar="{run,check,demo,surge,rehearse}"
    )
    config_help = f"config file (default: {DEFAULT_CONFIG})"
    for name, text in (
        ("run", "serve: SIGHUP reloads, SIGUSR1 reopens the access log, SIGTERM drains and stops"),
        ("check", "validate the config like nginx -t"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help=config_help)
        if name == "check":
            p.add_argument("--cluster", action="store_true", help="also try the cluster's Redis")
    demo = sub.add_parser("demo", help="two simulated WAS instances with guard in front")
    demo.add_argument(
        "--port-base",
        type=int,
        help="use ports N..N+3 (proxy, admin, was-1, was-2) instead of 8000, 9100, 8081, 8082",
    )
    from guard.tools.surge_args import add_arguments as add_surge_arguments

    add_surge_arguments(sub.add_parser("surge", help="flash-sale load generator (loopback)"))
    from guard.tools.rehearse import add_arguments as add_rehearse_arguments

    add_rehearse_arguments(sub.add_parser("rehearse", help="replay a log through a config, dry"))
    worker = sub.add_parser("worker")
    worker.add_argument("-c", "--config", type=Path, required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--of", type=int, required=True)
    worker.add_argument("--admin-socket", type=Path, required=True)
    return top


def main(argv: list[str] | None = None) -> None:
    from guard.logs import setup_logging, stop_logging

    args = parser().parse_args(argv)
    if args.command == "check":
        sys.exit(check(args.config, args.cluster))
    if args.command == "rehearse":  # offline: a config and a log, no network
        from guard.tools.rehearse import run_rehearse

        sys.exit(run_rehearse(args))
    if args.command == "surge":  # a client: no server tuning, its own terminal output
        from guard.tools.surge import run_surge

        sys.exit(run_loop(run_surge(args)))
    setup_logging(os.environ.get("GUARD_LOG_LEVEL", "INFO"))
    try:
        code = start(args)
    finally:
        stop_logging()
    sys.exit(code)


def start(args: argparse.Namespace) -> int:
    from guard.serve import BindError

    require_c_parsers()
    raise_fd_limit()
    tune_gc()
    try:
        if args.command == "run":
            return run(args.config)
        if args.command == "worker":
            from guard.serve import serve

            share = (args.index, args.of)
            return run_loop(serve(args.config, share=share, admin_socket=args.admin_socket))
        from guard.tools.demo import run_demo

        return run_loop(run_demo(args.port_base))
    except BindError as err:
        print(err, file=sys.stderr, flush=True)
        return 1


def check(path: Path, try_cluster: bool = False) -> int:
    try:
        loaded = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(summarize(loaded))
    if try_cluster:
        from guard.cluster.probe import probe

        return probe(loaded.config.cluster)
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
