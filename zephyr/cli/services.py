"""`zephyr scheduler|coordinator|worker|migrate`: run one service in the foreground.

A service's entry point is `serve(config, stop)`: it runs until the `stop` event is set (first
SIGTERM or SIGINT), then shuts down gracefully; a second signal cancels it outright. A ConfigError
or StartupError ends the process with status 2 and one line on stderr naming the cause.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from zephyr import config as cfg
from zephyr import logs, tracing
from zephyr.errors import ConfigError, StartupError

# command -> (config class, module with `serve(config, stop)`, help)
SERVICES: dict[str, tuple[type[Any], str, str]] = {
    "scheduler": (cfg.SchedulerConfig, "zephyr.scheduler.app", "run the HTTP API"),
    "coordinator": (cfg.CoordinatorConfig, "zephyr.coordinator.server", "run a coordinator"),
    "worker": (cfg.WorkerConfig, "zephyr.worker.agent", "run a worker"),
}


def register(subparsers: Any) -> None:
    for name, (config_cls, _module, help_text) in SERVICES.items():
        parser = subparsers.add_parser(name, help=help_text)
        cfg.add_arguments(parser, config_cls)
        parser.set_defaults(func=run_service, service=name)
    migrate_parser = subparsers.add_parser("migrate", help="apply database migrations (idempotent)")
    cfg.add_arguments(migrate_parser, cfg.DatabaseConfig)
    migrate_parser.set_defaults(func=run_migrate)


def fail(command: str, message: str) -> int:
    print(f"zephyr {command}: {message}", file=sys.stderr)
    return 2


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run_until_signalled(serve: Callable[[Any, asyncio.Event], Awaitable[None]], config: Any) -> None:
    """Run `serve(config, stop)`; first SIGTERM/SIGINT sets `stop`, the second cancels."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if stop.is_set():
            main.cancel()
        else:
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        await serve(config, stop)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise


def run_service(args: argparse.Namespace) -> int:
    config_cls, module_name, _help = SERVICES[args.service]
    try:
        config = cfg.load(config_cls, args)
        logs.setup(args.service, config.log_format, config.log_level)
        tracing.setup(args.service)
        serve = importlib.import_module(module_name).serve
        install_uvloop()
        asyncio.run(run_until_signalled(serve, config))
    except (ConfigError, StartupError) as exc:
        return fail(args.service, exc.message)
    finally:
        tracing.shutdown()
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from zephyr.db.migrate import migrate
    from zephyr.db.pool import connect, redact_dsn

    async def apply(dsn: str) -> list[str]:
        try:
            conn = await connect(dsn)
        except (TimeoutError, OSError) as exc:
            raise StartupError(f"cannot connect to database {redact_dsn(dsn)}: {exc}") from exc
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    try:
        config = cfg.load(cfg.DatabaseConfig, args)
        applied = asyncio.run(apply(config.require_database()))
    except (ConfigError, StartupError) as exc:
        return fail("migrate", exc.message)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0
