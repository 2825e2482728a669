"""`zephyr worker`: `serve(config, stop)` wires executors, runner, outbox and the stream together.

Lifecycle: imports ZEPHYR_WORKER_IMPORTS and builds the executors it can run (failing at start,
naming the variable, when one is misconfigured), connects, and executes until `stop` is set.
Then it drains: no new capacity, `draining` in heartbeats, running runs get ZEPHYR_DRAIN_S to
finish, the rest are cancelled and reported, and it waits (bounded) for the coordinator to ack
every completion before closing the stream. A second signal cancels `serve`: runs are then
killed (process groups included) within a few seconds and nothing more is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os

from zephyr import logs
from zephyr.config import WorkerConfig, warn_plaintext
from zephyr.errors import ConfigError
from zephyr.metrics_http import serve_metrics
from zephyr.worker.connection import Connection
from zephyr.worker.executors import build_executors
from zephyr.worker.outbox import Outbox
from zephyr.worker.runner import Runner

log = logging.getLogger(__name__)

# After draining, how long to wait for the coordinator's acks before closing anyway.
ACK_WAIT_S = 5.0


async def serve(config: WorkerConfig, stop: asyncio.Event) -> None:
    """Run the worker until `stop` is set, then drain and return."""
    config.validate()  # `load` validates too; a config built in code is checked here
    try:
        executors = build_executors(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logs.bind(worker_id=config.effective_worker_id)
    outbox = Outbox()
    runner = Runner(
        executors,
        outbox,
        capacity=config.concurrency,
        log_lines_per_run=config.log_lines_per_run,
        environ=os.environ,
        worker_id=config.effective_worker_id,
    )
    connection = Connection(
        worker_id=config.effective_worker_id,
        addrs=config.coordinators,
        token=config.cluster_token,
        task_types=list(executors),
        heartbeat_s=config.heartbeat_s,
        runner=runner,
        outbox=outbox,
        tls=config.client_tls,
    )
    metrics = (
        await serve_metrics(
            config.metrics_addr, config.cluster_token, tls_pair=(config.tls_cert, config.tls_key)
        )
        if config.metrics_addr
        else None
    )
    log.info(
        "worker %s: %d slots, types %s, coordinators %s",
        connection.worker_id,
        config.concurrency,
        ",".join(sorted(executors)),
        ",".join(map(str, config.coordinators)),
    )
    warn_plaintext(log, config.coordinators, config.client_tls is not None)
    warn_plaintext(log, (config.metrics_addr,), bool(config.tls_cert))
    gc.freeze()  # start-up's objects live as long as the process: keep them out of full collections
    stream = asyncio.create_task(connection.run(), name="connection")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stream, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stream.done():
            stream.result()  # a bug in the connection loop: surface it rather than idle silently
        log.info("draining: %d runs get up to %.0fs", runner.running, config.drain_s)
        await runner.drain(config.drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(outbox.wait_all_acked(), ACK_WAIT_S)
        log.info("drained; stopping")
    finally:
        stopping.cancel()
        connection.close()
        await runner.close()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(stream, 2.0)
        for executor in executors.values():
            with contextlib.suppress(Exception):
                await executor.close()
        if metrics is not None:
            await metrics.cleanup()
