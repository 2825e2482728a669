"""`zephyr up`: a whole cluster on one machine, in one terminal.

Starts an embedded PostgreSQL under `./.zephyr/` when ZEPHYR_DATABASE_URL is unset (a second `up`
reuses the data), applies migrations, then runs one scheduler, one coordinator and `--workers N`
workers (or `--autoscale MIN:MAX`, see zephyr.cli.autoscale) as child processes whose output is
prefixed with their name. Ctrl-C or SIGTERM stops the children (workers drain first) and then the
database. If a child dies, everything stops and the exit status says so.

Whatever addresses are set, the parts find each other: a listen port of 0 becomes a free port, and
the workers dial the coordinator this `up` started (ZEPHYR_GRPC_ADDR, a wildcard host dialled on
loopback), never a ZEPHYR_COORDINATORS left in the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zephyr import config as cfg
from zephyr.cli.autoscale import IDLE_S, Autoscaler, Policy, parse_bounds
from zephyr.errors import ConfigError, StartupError

STOP_GRACE_S = 15.0
COLORS = ("36", "35", "33", "32", "34", "31")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up", help="run a local cluster (embedded PostgreSQL unless ZEPHYR_DATABASE_URL)"
    )
    parser.add_argument("--workers", type=int, default=2, help="number of workers (default 2; 0 for none)")
    parser.add_argument("--data-dir", default=".zephyr", help="where the embedded database keeps its data")
    parser.add_argument(
        "--autoscale",
        metavar="MIN:MAX",
        help="run MIN to MAX workers, following the queue (instead of --workers)",
    )
    parser.add_argument(
        "--autoscale-idle-s",
        type=float,
        default=IDLE_S,
        metavar="SECONDS",
        help=f"with --autoscale: an idle worker is drained after this long (default {IDLE_S:g})",
    )
    parser.set_defaults(func=run_up)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """One service process of the cluster."""

    name: str
    argv: list[str]
    env: dict[str, str]
    color: str
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        # A session of its own: Ctrl-C reaches only `up`, which then stops children in order.
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.pump = asyncio.create_task(self._pump_output())

    async def _pump_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        prefix = (
            f"\x1b[{self.color}m{self.name:<12}|\x1b[0m " if sys.stdout.isatty() else f"{self.name:<12}| "
        )
        async for raw in self.process.stdout:
            sys.stdout.write(prefix + raw.decode(errors="replace"))
            sys.stdout.flush()

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        if self.pump is not None:
            await self.pump


PYTHON = [sys.executable, "-m", "zephyr.cli.main"]
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _listen_addr(env: dict[str, str], variable: str, default: str) -> cfg.Addr:
    try:
        addr = cfg.parse_addr(env.get(variable) or default)
    except ValueError as exc:
        raise ConfigError(f"{variable}: invalid value: {exc}") from None
    return cfg.Addr(addr.host, free_port()) if addr.port == 0 else addr


def wire(env: dict[str, str]) -> None:
    """Settle the listen addresses in `env` (port 0 -> a free port) and point workers at them."""
    http = _listen_addr(env, "ZEPHYR_HTTP_ADDR", "127.0.0.1:8080")
    grpc = _listen_addr(env, "ZEPHYR_GRPC_ADDR", "127.0.0.1:50051")
    env["ZEPHYR_HTTP_ADDR"] = str(http)
    env["ZEPHYR_GRPC_ADDR"] = str(grpc)
    env["ZEPHYR_COORDINATORS"] = str(cfg.Addr(WILDCARD_HOSTS.get(grpc.host, grpc.host), grpc.port))


def plan_worker(index: int, base_env: dict[str, str]) -> Child:
    """Worker number `index`: its own id and metrics port, no database credentials."""
    # Workers hold no database credentials: only the publish target, which is a separate setting.
    env = {key: value for key, value in base_env.items() if key != "ZEPHYR_DATABASE_URL"}
    env["ZEPHYR_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    prefix = base_env.get("ZEPHYR_WORKER_ID") or f"{socket.gethostname()}-worker"
    env["ZEPHYR_WORKER_ID"] = f"{prefix}-{index}"
    return Child(f"worker-{index}", [*PYTHON, "worker"], env, COLORS[(index + 1) % len(COLORS)])


def plan_children(workers: int, base_env: dict[str, str]) -> list[Child]:
    """The scheduler, the coordinator and `workers` workers, each with its metrics port."""
    children = [Child("scheduler", [*PYTHON, "scheduler"], dict(base_env), COLORS[0])]
    coordinator_env = dict(base_env)
    coordinator_env.setdefault("ZEPHYR_METRICS_ADDR", f"127.0.0.1:{free_port()}")
    children.append(Child("coordinator", [*PYTHON, "coordinator"], coordinator_env, COLORS[1]))
    children.extend(plan_worker(index, base_env) for index in range(1, workers + 1))
    return children


async def supervise(children: list[Child], autoscaler: Autoscaler | None = None) -> int:
    """Run the children (and the autoscaler's workers) until a signal or until one exits; then
    stop them all, workers first. Returns the exit status."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    for child in children:
        await child.start()
    exits = {asyncio.create_task(c.process.wait()): c for c in children if c.process is not None}
    stop_wait = asyncio.create_task(stopping.wait())
    scaling = asyncio.create_task(autoscaler.run()) if autoscaler is not None else None
    watched: list[asyncio.Task[Any]] = [stop_wait, *exits, *([scaling] if scaling else [])]
    done, _pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done:
        if task in exits:
            reason = f"{exits[task].name} exited with status {task.result()}"
        elif task is scaling:
            reason = f"autoscale: {task.exception() or 'stopped'}"
        else:
            continue
        print(f"zephyr up: {reason}; stopping the cluster", file=sys.stderr)
        status = 1
    stop_wait.cancel()
    if scaling is not None and autoscaler is not None:
        scaling.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await scaling
    # Workers first so they drain and report while the coordinator is still there.
    workers = [c for c in children if c.name.startswith("worker")]
    services = [c for c in children if not c.name.startswith("worker")]
    for child in workers:
        child.terminate()
    await asyncio.gather(
        *(child.wait(STOP_GRACE_S) for child in workers),
        *([autoscaler.stop(STOP_GRACE_S)] if autoscaler is not None else []),
    )
    for child in services:
        child.terminate()
    await asyncio.gather(*(child.wait(STOP_GRACE_S) for child in services))
    for task in exits:
        task.cancel()
    return status


def run_up(args: argparse.Namespace) -> int:
    if args.workers < 0:
        print("zephyr up: --workers must be 0 or more", file=sys.stderr)
        return 2
    bounds = None
    if args.autoscale is not None:
        try:
            bounds = parse_bounds(args.autoscale)
        except ValueError as exc:
            print(f"zephyr up: --autoscale: {exc}", file=sys.stderr)
            return 2
        if not args.autoscale_idle_s > 0:
            print("zephyr up: --autoscale-idle-s must be above 0", file=sys.stderr)
            return 2
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    embedded = None
    try:
        common = cfg.load(cfg.DatabaseConfig)
        dsn = common.database_url
        if dsn is None:
            from zephyr.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(Path(args.data_dir) / "pgdata")
            dsn = embedded.start()
            print(f"zephyr up: embedded PostgreSQL in {embedded.data_dir}")
        env["ZEPHYR_DATABASE_URL"] = dsn
        env.setdefault("ZEPHYR_PUBLISH_DATABASE_URL", dsn)
        asyncio.run(_migrate(dsn))
        wire(env)
        autoscaler = None
        if bounds is not None:
            concurrency = cfg.load(cfg.WorkerConfig, environ=env).concurrency
            policy = Policy(bounds, concurrency, args.autoscale_idle_s)
            autoscaler = Autoscaler(lambda index: plan_worker(index, env), policy, dsn)
        children = plan_children(0 if bounds else args.workers, env)
        shown = f"autoscale {bounds.low}:{bounds.high}" if bounds else f"workers {args.workers}"
        print(f"zephyr up: API http://{env['ZEPHYR_HTTP_ADDR']}  gRPC {env['ZEPHYR_GRPC_ADDR']}  {shown}")
        for child in children[1:]:
            print(f"zephyr up: {child.name} metrics http://{child.env['ZEPHYR_METRICS_ADDR']}/metrics")
        return asyncio.run(supervise(children, autoscaler))
    except (ConfigError, StartupError) as exc:
        print(f"zephyr up: {exc.message}", file=sys.stderr)
        return 2
    finally:
        if embedded is not None:
            embedded.stop()
            print("zephyr up: embedded PostgreSQL stopped")


async def _migrate(dsn: str) -> None:
    from zephyr.db.migrate import migrate
    from zephyr.db.pool import connect, redact_dsn

    try:
        conn = await connect(dsn)
    except (OSError, TimeoutError) as exc:
        raise StartupError(f"cannot connect to database {redact_dsn(dsn)}: {exc}") from exc
    try:
        await migrate(conn)
    finally:
        await conn.close()
