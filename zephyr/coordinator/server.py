"""`zephyr coordinator`: `serve(config, stop)` wires the database, the gRPC server and the loops.

Start-up: pool (waits for the database), migrations under their advisory lock, then the gRPC
server with WorkerGateway, Admin, health and reflection on ZEPHYR_GRPC_ADDR. Background loops
(listener, dispatcher, maintenance, batchers) run supervised: if one dies the service stops
with its error instead of running on half-alive. On `stop`: health goes NOT_SERVING, streams end
(workers reconnect elsewhere), pending completions are applied, the pool closes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from zephyr import logs
from zephyr.config import CoordinatorConfig, warn_plaintext
from zephyr.coordinator.admin import Admin
from zephyr.coordinator.auth import TokenInterceptor
from zephyr.coordinator.completions import Backoff, CompletionBatcher
from zephyr.coordinator.dispatcher import Dispatcher, DispatcherSignals
from zephyr.coordinator.gateway import Gateway
from zephyr.coordinator.listener import Listener
from zephyr.coordinator.logs_sink import LogSink
from zephyr.coordinator.maintenance import Maintenance, MaintenanceSignals
from zephyr.coordinator.registry import Registry
from zephyr.db.migrate import migrate
from zephyr.db.pool import create_pool
from zephyr.errors import StartupError
from zephyr.metrics_http import serve_metrics
from zephyr.rpc import SERVER_OPTIONS
from zephyr.tls import grpc_server_credentials
from zephyr.v1 import admin_pb2, admin_pb2_grpc, worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
# A statement on a connection the database dropped silently must fail, not hang a loop forever.
DB_COMMAND_TIMEOUT_S = 10.0
# A run's deadline backstop fires this long after its timeout_s: the worker enforces the timeout
# itself and reports it; the backstop is for a worker that cannot.
MIN_DEADLINE_GRACE_S = 5.0
# The statements run for every task find each row by its key or by an index range. asyncpg keeps
# prepared statements, so PostgreSQL caches one generic plan per statement, made with the statistics
# of the moment: made while the tables were small, plans read them whole (a sequential scan, a merge
# join along a primary key, every running run through its partial index) once per batch, more and
# more as they grew. Two pools, each with the settings its statements need:
# - the claim (claim_due, next_due) keeps its generic plan and may only use index lookups. Planning
#   it costs more than running it, and more as the table grows: left to choose, PostgreSQL planned
#   every claim afresh on a 600,000-task table (0.5 ms of 1.2 ms; a claim runs in 0.3 ms);
CLAIM_PATH_SETTINGS = {
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "plan_cache_mode": "force_generic_plan",
}
# - endings, task transitions and log lines are planned for each batch, with its own array sizes
#   and the tables' current sizes (a generic plan guesses ten elements: it compared each ending
#   with each run found, 2,400/s instead of 4,200/s in a burst); their fences are written so that
#   no condition on a table alone can make the planner start from that table (finish_runs).
ENDINGS_SETTINGS = {"enable_seqscan": "off", "plan_cache_mode": "force_custom_plan"}


def default_coordinator_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CoordinatorSignals:
    """The test signals of one coordinator's loops (zephyr.testsignal); off until `init()`."""

    def __init__(self) -> None:
        self.dispatcher = DispatcherSignals()
        self.maintenance = MaintenanceSignals()

    def init(self) -> None:
        self.dispatcher.init()
        self.maintenance.init()


async def serve(
    config: CoordinatorConfig, stop: asyncio.Event, signals: CoordinatorSignals | None = None
) -> None:
    """Run a coordinator until `stop` is set; its loops announce what they do on `signals` (tests)."""
    dsn = config.require_database()
    coordinator_id = config.coordinator_id or default_coordinator_id()
    logs.bind(coordinator_id=coordinator_id)
    pool = await create_pool(
        dsn, min_size=2, max_size=config.db_pool_size, command_timeout=DB_COMMAND_TIMEOUT_S
    )
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        claim_pool = await create_pool(
            dsn,
            min_size=1,
            max_size=2,
            command_timeout=DB_COMMAND_TIMEOUT_S,
            server_settings=CLAIM_PATH_SETTINGS,
        )
        endings_pool = await create_pool(
            dsn,
            min_size=1,
            max_size=3,  # the completion batcher and the log sink hold one each at a time
            command_timeout=DB_COMMAND_TIMEOUT_S,
            server_settings=ENDINGS_SETTINGS,
        )
        try:
            await _serve(
                config, stop, pool, claim_pool, endings_pool, coordinator_id, signals or CoordinatorSignals()
            )
        finally:
            await endings_pool.close()
            await claim_pool.close()
    finally:
        await pool.close()


async def _serve(
    config: CoordinatorConfig,
    stop: asyncio.Event,
    pool: Any,
    claim_pool: Any,
    endings_pool: Any,
    coordinator_id: str,
    signals: CoordinatorSignals,
) -> None:
    """`claim_pool` runs the claim loop, `endings_pool` the endings and log lines of every task
    (see their settings above); `pool` the rest (registration, heartbeats, maintenance, admin)."""
    backoff = Backoff(config.retry_base_s, config.retry_cap_s)
    registry = Registry()
    batcher = CompletionBatcher(endings_pool, backoff)
    logs = LogSink(endings_pool)
    gateway = Gateway(
        pool,
        registry,
        batcher,
        logs,
        coordinator_id=coordinator_id,
        heartbeat_s=config.heartbeat_s,
        lease_s=config.lease_s,
        check_peer_identity=bool(config.tls_ca),
    )
    dispatcher = Dispatcher(
        claim_pool,
        registry,
        batcher,
        coordinator_id=coordinator_id,
        poll_s=config.poll_s,
        grace_s=max(MIN_DEADLINE_GRACE_S, config.lease_s),
        signals=signals.dispatcher,
    )
    maintenance = Maintenance(
        pool,
        backoff,
        lease_s=config.lease_s,
        retention_s=config.retention_days * 86400,
        coordinator_id=coordinator_id,
        gateway=gateway,
        signals=signals.maintenance,
    )
    listener = Listener(
        dsn=config.require_database(),
        handlers={
            "zephyr_tasks": dispatcher.on_tasks_notify,
            "zephyr_cancel": gateway.on_cancel_notify,
            "zephyr_drain": gateway.on_drain_notify,
        },
    )
    server, health = _grpc_server(config, gateway, Admin(pool))
    metrics_runner = (
        await serve_metrics(
            config.metrics_addr, config.cluster_token, tls_pair=(config.tls_cert, config.tls_key)
        )
        if config.metrics_addr
        else None
    )

    batcher.start()
    logs.start()
    loops_stop = asyncio.Event()
    loops = [
        asyncio.create_task(listener.run(loops_stop), name="listener"),
        asyncio.create_task(dispatcher.run(loops_stop), name="dispatcher"),
        asyncio.create_task(maintenance.run(loops_stop), name="maintenance"),
    ]
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in ("zephyr.v1.WorkerGateway", "zephyr.v1.Admin"):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "coordinator %s listening on %s (%s)",
        coordinator_id,
        config.grpc_addr,
        ("mutual TLS" if config.tls_ca else "TLS") if config.tls_cert else "plaintext",
    )
    warn_plaintext(log, (config.grpc_addr, config.metrics_addr), bool(config.tls_cert))
    gc.freeze()  # start-up's objects live as long as the process: keep them out of full collections
    failure: BaseException | None = None
    try:
        failure = await _first_failure(stop, loops)
    finally:
        await health.enter_graceful_shutdown()
        loops_stop.set()
        await server.stop(SHUTDOWN_GRACE_S)
        await asyncio.wait(loops, timeout=SHUTDOWN_GRACE_S)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, gateway.close(), return_exceptions=True)
        await batcher.drain(SHUTDOWN_GRACE_S)
        await batcher.close()
        await logs.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
    if failure is not None:
        raise StartupError(f"coordinator loop failed: {failure!r}")


def _grpc_server(
    config: CoordinatorConfig, gateway: Gateway, admin: Admin
) -> tuple[grpc.aio.Server, HealthServicer]:
    """The gRPC server with WorkerGateway, Admin, health and reflection, bound to ZEPHYR_GRPC_ADDR
    (not started); StartupError naming the variable if it cannot listen there."""
    # gRPC sets SO_REUSEPORT by default: a second coordinator on a taken port would silently share it.
    options = [*SERVER_OPTIONS, ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options, interceptors=[TokenInterceptor(config.cluster_token)])
    worker_pb2_grpc.add_WorkerGatewayServicer_to_server(gateway, server)
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            worker_pb2.DESCRIPTOR.services_by_name["WorkerGateway"].full_name,
            admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        if config.tls_cert and config.tls_key:
            credentials = grpc_server_credentials(config.tls_cert, config.tls_key, config.tls_ca)
            bound = server.add_secure_port(str(config.grpc_addr), credentials)
        else:
            bound = server.add_insecure_port(str(config.grpc_addr))
    except RuntimeError as exc:  # grpcio raises on a port in use; older versions returned 0
        raise StartupError(f"ZEPHYR_GRPC_ADDR: cannot listen on {config.grpc_addr}: {exc}") from None
    if bound == 0:
        raise StartupError(f"ZEPHYR_GRPC_ADDR: cannot listen on {config.grpc_addr}")
    return server, health


async def _first_failure(stop: asyncio.Event, loops: list[asyncio.Task[None]]) -> BaseException | None:
    """Wait until `stop` is set or a loop ends; returns the error of a loop that died, if any."""
    failure: BaseException | None = None
    stop_wait = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stop_wait, *loops], return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    for task in done:
        if task is not stop_wait and not task.cancelled() and task.exception() is not None:
            failure = task.exception()
            log.error("%s loop died: %r; stopping", task.get_name(), failure)
    return failure
