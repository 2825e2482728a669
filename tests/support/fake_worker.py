"""A scripted worker for coordinator tests: a real gRPC client on a real loopback stream.

It speaks the protocol of proto/zephyr/v1/worker.proto but executes nothing: the test decides
when to heartbeat and what to complete. Also: an in-process coordinator (`running_coordinator`)
and `insert_tasks`, which writes tasks the way the API does (same query, same NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc

from tests.support.cluster import free_port, grpc_serving, wait_until
from zephyr.config import CoordinatorConfig, load
from zephyr.coordinator.server import CoordinatorSignals, serve
from zephyr.db.queries import QUERIES
from zephyr.ids import new_id
from zephyr.rpc import CHANNEL_OPTIONS, auth_metadata
from zephyr.v1 import worker_pb2 as pb
from zephyr.v1 import worker_pb2_grpc


class FakeWorker:
    """One worker stream. Incoming messages are sorted into queues the test reads."""

    def __init__(
        self,
        addr: str,
        worker_id: str,
        *,
        capacity: int = 10,
        task_types: Iterable[str] = ("internal",),
        token: str | None = None,
        in_flight: Iterable[tuple[str, int]] = (),
        heartbeat_s: float | None = 0.3,
        pid: int = 1,
    ) -> None:
        self.pid = pid
        self.addr = addr
        self.worker_id = worker_id
        self.capacity = capacity
        self.task_types = list(task_types)
        self.token = token
        self.in_flight = list(in_flight)
        self.heartbeat_s = heartbeat_s  # None: the test heartbeats by hand (or lets the lease lapse)
        self._beater: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.registered: pb.Registered | None = None
        self.assignments: asyncio.Queue[pb.Assignment] = asyncio.Queue()
        self.assignment_messages = 0
        self.cancels: asyncio.Queue[pb.RunRef] = asyncio.Queue()
        self.acks: dict[str, bool] = {}
        self.heartbeat_acks: set[int] = set()
        self.drained = asyncio.Event()
        self.ended = asyncio.Event()
        self.error: grpc.aio.AioRpcError | None = None
        self._seq = 0
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> pb.Registered:
        self._channel = grpc.aio.insecure_channel(self.addr, options=CHANNEL_OPTIONS)
        stub = worker_pb2_grpc.WorkerGatewayStub(self._channel)
        self._call = stub.Connect(None, metadata=auth_metadata(self.token))  # None: we write() ourselves
        await self._call.write(
            pb.WorkerMessage(
                register=pb.Register(
                    worker_id=self.worker_id,
                    host="test-host",
                    capacity=self.capacity,
                    task_types=self.task_types,
                    in_flight=[pb.RunRef(run_id=r, attempt=a) for r, a in self.in_flight],
                    version="test",
                    pid=self.pid,
                )
            )
        )
        first = await self._next()
        if first is None:
            raise ConnectionError("stream ended before registered")
        self.registered = first.registered
        self._reader = asyncio.create_task(self._read())
        if self.heartbeat_s is not None:
            self._beater = asyncio.create_task(self._beat(self.heartbeat_s))
        return first.registered

    async def _next(self) -> pb.CoordinatorMessage | None:
        """The next message down the stream; None once the stream has ended (grpc.aio.EOF)."""
        message = await self._call.read()
        return message if isinstance(message, pb.CoordinatorMessage) else None

    async def _beat(self, interval: float) -> None:
        with contextlib.suppress(Exception):
            while not self.ended.is_set():
                await self.heartbeat()
                await asyncio.sleep(interval)

    def stop_heartbeats(self) -> None:
        """Go silent while keeping the stream open (a hung worker)."""
        if self._beater is not None:
            self._beater.cancel()

    async def _read(self) -> None:
        try:
            while True:
                message = await self._next()
                if message is None:
                    break
                if message.assignments:
                    self.assignment_messages += 1
                for assignment in message.assignments:
                    self.assignments.put_nowait(assignment)
                for ref in message.cancels:
                    self.cancels.put_nowait(ref)
                for ack in message.completion_acks:
                    self.acks[ack.run_id] = ack.accepted
                if message.HasField("heartbeat_ack"):
                    self.heartbeat_acks.add(message.heartbeat_ack.seq)
                if message.HasField("drain"):
                    self.drained.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    async def _write(self, message: pb.WorkerMessage) -> None:
        async with self._write_lock:  # one write at a time on a stream
            await self._call.write(message)

    async def heartbeat(self, *, running: int = 0, draining: bool = False) -> int:
        self._seq += 1
        await self._write(
            pb.WorkerMessage(
                heartbeat=pb.Heartbeat(
                    seq=self._seq, running=running, free_slots=self.capacity - running, draining=draining
                )
            )
        )
        return self._seq

    async def heartbeat_acked(self) -> None:
        seq = await self.heartbeat()
        await wait_until(lambda: _true(seq in self.heartbeat_acks), timeout=5, what="heartbeat ack")

    async def take(self, count: int, timeout: float = 10.0) -> list[pb.Assignment]:
        """The next `count` assignments (waits for them)."""

        async def one() -> pb.Assignment:
            return await self.assignments.get()

        return [await asyncio.wait_for(one(), timeout) for _ in range(count)]

    async def complete(
        self,
        assignments: Iterable[pb.Assignment],
        outcome: int = pb.RUN_OUTCOME_SUCCEEDED,
        *,
        result: str = "",
        error_code: str = "",
        retryable: bool = True,
        attempt: int | None = None,
    ) -> None:
        """Send one message completing all of `assignments`."""
        await self._write(
            pb.WorkerMessage(
                completions=[
                    pb.Completion(
                        run_id=a.run_id,
                        attempt=a.attempt if attempt is None else attempt,
                        outcome=outcome,  # type: ignore[arg-type]
                        result_json=result,
                        error_code=error_code,
                        error_message=error_code,
                        retryable=retryable,
                        duration_s=0.001,
                    )
                    for a in assignments
                ]
            )
        )

    async def acked(self, run_ids: Iterable[str], timeout: float = 10.0) -> dict[str, bool]:
        wanted = list(run_ids)
        await wait_until(lambda: _true(all(r in self.acks for r in wanted)), timeout=timeout, what="acks")
        return {r: self.acks[r] for r in wanted}

    async def log(self, run_id: str, lines: Iterable[str]) -> None:
        now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
        await self._write(
            pb.WorkerMessage(
                logs=[
                    pb.LogLine(run_id=run_id, ts_us=now_us + i, stream=pb.LOG_STREAM_STDOUT, line=line)
                    for i, line in enumerate(lines)
                ]
            )
        )

    async def close(self) -> None:
        self.stop_heartbeats()
        if self._call is not None:
            with contextlib.suppress(Exception):
                await self._call.done_writing()
            self._call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._channel is not None:
            await self._channel.close(None)

    async def __aenter__(self) -> FakeWorker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _true(value: bool) -> bool:
    return value


@dataclass
class RunningCoordinator:
    addr: str
    config: CoordinatorConfig
    task: asyncio.Task[None]
    stop: asyncio.Event
    signals: CoordinatorSignals  # recording from before the coordinator started


@contextlib.asynccontextmanager
async def running_coordinator(database_url: str, **env: str) -> AsyncIterator[RunningCoordinator]:
    """A coordinator served in this process on a free loopback port, stopped on exit; its test
    signals record from the start."""
    port = free_port()
    environ = {
        "ZEPHYR_DATABASE_URL": database_url,
        "ZEPHYR_GRPC_ADDR": f"127.0.0.1:{port}",
        "ZEPHYR_LEASE_S": "2",
        "ZEPHYR_HEARTBEAT_S": "0.5",
        "ZEPHYR_RETRY_BASE_S": "0.05",
        "ZEPHYR_RETRY_CAP_S": "0.2",
        **env,
    }
    config = load(CoordinatorConfig, environ=environ)
    stop = asyncio.Event()
    signals = CoordinatorSignals()
    signals.init()
    task = asyncio.create_task(serve(config, stop, signals))
    addr = f"127.0.0.1:{port}"

    async def serving() -> bool:
        if task.done():
            task.result()
        return await grpc_serving(addr)

    await wait_until(serving, what="coordinator serving")
    try:
        yield RunningCoordinator(addr, config, task, stop, signals)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def insert_tasks(
    db: asyncpg.Pool,
    count: int = 1,
    *,
    type: str = "internal",
    payload: Mapping[str, Any] | None = None,
    schedule: Mapping[str, Any] | None = None,
    recurring: bool = False,
    overlap: bool = False,
    priority: int = 0,
    max_attempts: int = 3,
    timeout_s: float = 300.0,
    next_run_at: datetime | None = None,
    traceparent: str | None = None,
) -> list[uuid.UUID]:
    """Insert `count` tasks with the API's batch query (which also NOTIFYs `zephyr_tasks`)."""
    ids = [new_id() for _ in range(count)]
    when = next_run_at or datetime.now(UTC)
    rows = await db.fetch(
        QUERIES["insert_tasks_batch"],
        ids,
        [f"t{i}" for i in range(count)],
        [type] * count,
        [json.dumps(dict(payload or {"function": "zephyr.noop"}))] * count,
        [json.dumps(dict(schedule)) if schedule else None] * count,
        [recurring] * count,
        [overlap] * count,
        [priority] * count,
        [max_attempts] * count,
        [timeout_s] * count,
        [when] * count,
        [None] * count,
        [traceparent] * count,
    )
    assert len(rows) == count
    return ids
