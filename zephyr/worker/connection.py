"""The worker's stream to a coordinator: register, heartbeat, carry work both ways, reconnect.

`Connection.run()` keeps one WorkerGateway.Connect stream open to some address of
ZEPHYR_COORDINATORS (a random one first, then the next on each failure) with exponential backoff
and full jitter between attempts. On each stream it:
1. sends Register with the runs still executing AND the completions not yet acked (in_flight);
2. waits for Registered, stops (without reporting) every run in `abandon`, then re-sends every
   unacked completion;
3. runs a reader (assignments, cancels, drain, acks), a single writer (heartbeats, log lines and
   completions batched into one WorkerMessage) and a heartbeat ticker. Heartbeats travel on the
   stream itself; when no HeartbeatAck arrives for lease_s the stream is taken for dead (a
   zombie stream: the process lives, the path does not) and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from typing import Any, cast

import grpc

from zephyr import __version__
from zephyr.config import Addr
from zephyr.metrics import WORKER_RECONNECTS
from zephyr.rpc import CHANNEL_OPTIONS, auth_metadata, backoff_s
from zephyr.tls import ClientTls
from zephyr.v1 import worker_pb2 as pb
from zephyr.v1 import worker_pb2_grpc as pb_grpc
from zephyr.worker.outbox import Outbox
from zephyr.worker.runner import Runner

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 10.0
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 10.0


class StreamLost(Exception):
    """The stream ended or stopped answering; reconnect."""


def host_load() -> float:
    """1-minute load average divided by the CPU count (0 where unknown)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


class Connection:
    """Keeps the worker connected and is the only place that talks gRPC."""

    def __init__(
        self,
        *,
        worker_id: str,
        addrs: Sequence[Addr],
        token: str | None,
        task_types: Sequence[str],
        heartbeat_s: float,
        runner: Runner,
        outbox: Outbox,
        tls: ClientTls | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.tls = tls
        self.addrs = list(addrs)
        self.token = token
        self.task_types = sorted(task_types)
        self.heartbeat_s = heartbeat_s
        self.runner = runner
        self.outbox = outbox
        self.coordinator_id = ""
        self.registered = asyncio.Event()  # set while a stream is registered
        self._closing = asyncio.Event()
        self._seq = 0
        self._drain_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Stay connected until `close()`; never raises for network trouble."""
        index = random.randrange(len(self.addrs))
        failures = 0
        while not self._closing.is_set():
            addr = self.addrs[index % len(self.addrs)]
            index += 1
            was_registered = False
            try:
                was_registered = await self._session(addr)
            except (StreamLost, grpc.aio.AioRpcError, OSError, TimeoutError) as exc:
                was_registered = self.registered.is_set()
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    # Another live worker holds our id; it is ours again once its lease lapses
                    # (say, this process restarted after a crash), so keep trying, loudly.
                    log.error("refused by %s: %s", addr, exc.details())
                else:
                    log.warning("stream to %s lost: %s", addr, _describe(exc))
                await self._explain_tls(exc, addr)
            finally:
                self.registered.clear()
                self.outbox.set_connected(False)
            if self._closing.is_set():
                break
            failures = 1 if was_registered else failures + 1
            WORKER_RECONNECTS.inc()
            delay = backoff_s(failures, base_s=BACKOFF_BASE_S, cap_s=BACKOFF_CAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _explain_tls(self, exc: BaseException, addr: Addr) -> None:
        """Log, as an error, why a failed connection is TLS's doing (a refused certificate)."""
        if self.tls is None or not isinstance(exc, grpc.aio.AioRpcError):
            return
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            return
        reason = await asyncio.to_thread(self.tls.explain, exc.details() or "", addr.host, addr.port)
        if reason:
            log.error("%s: %s", addr, reason)

    def close(self) -> None:
        """Ask `run()` to end: the current stream is half-closed and dropped."""
        self._closing.set()
        self.outbox.wake()

    # -- one stream -----------------------------------------------------------------------------

    async def _session(self, addr: Addr) -> bool:
        """One stream's life; True when it got as far as Registered before ending."""
        if self.tls is None:
            channel = grpc.aio.insecure_channel(str(addr), options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.secure_channel(str(addr), self.tls.credentials(), options=CHANNEL_OPTIONS)
        async with channel:
            # No request iterator: the stream's messages go by call.write().
            call = pb_grpc.WorkerGatewayStub(channel).Connect(None, metadata=auth_metadata(self.token))
            try:
                return await self._converse(addr, call)
            finally:
                call.cancel()

    async def _converse(self, addr: Addr, call: grpc.aio.StreamStreamCall) -> bool:  # type: ignore[type-arg]
        in_flight = self.runner.in_flight() + self.outbox.unacked_refs()
        await _send(
            call,
            pb.WorkerMessage(
                register=pb.Register(
                    worker_id=self.worker_id,
                    host=socket.gethostname(),
                    capacity=self.runner.capacity,
                    task_types=self.task_types,
                    in_flight=in_flight,
                    version=__version__,
                    pid=os.getpid(),
                )
            ),
        )
        first = await asyncio.wait_for(_next(call), REGISTER_TIMEOUT_S)
        if first is None or not first.HasField("registered"):
            raise StreamLost("the coordinator answered Register without Registered")
        registered = first.registered
        for ref in registered.abandon:
            self.runner.abandon(ref.run_id)
        self.coordinator_id = registered.coordinator_id
        heartbeat_s = min(self.heartbeat_s, registered.heartbeat_s or self.heartbeat_s)
        lease_s = registered.lease_s or heartbeat_s * 5
        log.info(
            "registered with coordinator %s at %s (%d in flight, %d abandoned, types %s)",
            registered.coordinator_id or "?",
            addr,
            len(in_flight),
            len(registered.abandon),
            ",".join(self.task_types),
        )
        self.outbox.set_connected(True)
        self.registered.set()
        state = _StreamState(last_ack=time.monotonic())
        tasks = [
            asyncio.create_task(self._read(call, state), name="stream-reader"),
            asyncio.create_task(self._write(call, state), name="stream-writer"),
            asyncio.create_task(self._tick(state, heartbeat_s, lease_s), name="stream-heartbeat"),
            asyncio.create_task(self._closing.wait(), name="stream-closing"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not self._closing.is_set():
            raise StreamLost("the coordinator closed the stream")
        return True

    async def _read(self, call: grpc.aio.StreamStreamCall, state: _StreamState) -> None:  # type: ignore[type-arg]
        while True:
            msg = await _next(call)
            if msg is None:
                raise StreamLost("the coordinator ended the stream")
            if msg.HasField("heartbeat_ack"):
                state.last_ack = time.monotonic()
            for ack in msg.completion_acks:
                settled = self.outbox.ack(ack.run_id)
                if settled is not None and not ack.accepted:
                    log.warning(
                        "completion of run %s refused by the coordinator (fenced)",
                        ack.run_id,
                        extra={"run_id": ack.run_id},
                    )
            for ref in msg.cancels:
                self.runner.cancel(ref.run_id, ref.attempt)
            for assignment in msg.assignments:
                self.runner.start(assignment)
            if msg.HasField("drain"):
                log.info("coordinator asked to drain (grace %.1fs)", msg.drain.grace_s)
                if self._drain_task is None:
                    self._drain_task = asyncio.create_task(self.runner.drain(msg.drain.grace_s))

    async def _write(self, call: grpc.aio.StreamStreamCall, state: _StreamState) -> None:  # type: ignore[type-arg]
        while True:
            await self.outbox.wait()
            lines, completions = self.outbox.take()
            heartbeat = None
            if state.heartbeat_due or (self.runner.draining and not state.reported_draining):
                state.heartbeat_due = False
                state.reported_draining = self.runner.draining
                self._seq += 1
                heartbeat = pb.Heartbeat(
                    seq=self._seq,
                    running=self.runner.running,
                    free_slots=self.runner.free_slots,
                    load=host_load(),
                    draining=self.runner.draining,
                )
            if heartbeat is None and not lines and not completions:
                continue
            await _send(call, pb.WorkerMessage(heartbeat=heartbeat, completions=completions, logs=lines))

    async def _tick(self, state: _StreamState, heartbeat_s: float, lease_s: float) -> None:
        while True:
            state.heartbeat_due = True
            self.outbox.wake()
            await asyncio.sleep(heartbeat_s)
            silent_s = time.monotonic() - state.last_ack
            if silent_s > lease_s:
                raise StreamLost(f"no heartbeat ack for {silent_s:.1f}s (lease {lease_s:g}s)")


class _StreamState:
    __slots__ = ("heartbeat_due", "last_ack", "reported_draining")

    def __init__(self, last_ack: float) -> None:
        self.last_ack = last_ack
        self.heartbeat_due = True
        self.reported_draining = False


async def _send(call: Any, msg: pb.WorkerMessage) -> None:
    """Write one message; a call that already ended (refused, reset, closed by the peer) is StreamLost."""
    try:
        await call.write(msg)
    except asyncio.InvalidStateError as exc:  # grpc.aio's answer to a write on a finished call
        raise StreamLost(str(exc)) from exc


async def _next(call: Any) -> pb.CoordinatorMessage | None:
    """The next message of the stream, or None at its end."""
    msg = await call.read()
    return None if msg is grpc.aio.EOF else cast(pb.CoordinatorMessage, msg)  # type: ignore[attr-defined]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
