"""A small real gRPC server speaking the worker protocol, for testing the worker on its own.

It is a real grpc.aio server on loopback (the worker under test talks real gRPC to it), whose
behaviour the test steers: what Registered says (abandon, lease), whether heartbeats and
completions are acked, what is pushed down the stream. Every message received is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.support.cluster import wait_until
from zephyr.rpc import token_matches
from zephyr.v1 import worker_pb2 as pb
from zephyr.v1 import worker_pb2_grpc as pb_grpc


@dataclass
class Stream:
    """One worker stream as the server saw it."""

    register: pb.Register
    received: list[pb.WorkerMessage] = field(default_factory=list)
    outgoing: asyncio.Queue[pb.CoordinatorMessage | None] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, **fields: Any) -> None:
        self.outgoing.put_nowait(pb.CoordinatorMessage(**fields))

    def close(self) -> None:
        """End the stream from the server side."""
        self.outgoing.put_nowait(None)

    @property
    def heartbeats(self) -> list[pb.Heartbeat]:
        return [m.heartbeat for m in self.received if m.HasField("heartbeat")]

    @property
    def completions(self) -> list[pb.Completion]:
        return [c for m in self.received for c in m.completions]

    @property
    def logs(self) -> list[pb.LogLine]:
        return [line for m in self.received for line in m.logs]

    def completion(self, run_id: str) -> pb.Completion | None:
        return next((c for c in self.completions if c.run_id == run_id), None)


class ProtocolServer(pb_grpc.WorkerGatewayServicer):
    """WorkerGateway with steerable answers; `streams` in connection order."""

    def __init__(self, *, token: str | None = None, heartbeat_s: float = 0.1, lease_s: float = 5.0) -> None:
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.ack_heartbeats = True
        self.ack_completions = True
        self.accept_completions = True
        self.abandon: Callable[[pb.Register], list[pb.RunRef]] = lambda _reg: []
        self.streams: list[Stream] = []
        self.server: grpc.aio.Server | None = None
        self.addr = ""

    async def start(self) -> ProtocolServer:
        self.server = grpc.aio.server()
        pb_grpc.add_WorkerGatewayServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.addr = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    async def Connect(
        self, request_iterator: AsyncIterator[pb.WorkerMessage], context: Any
    ) -> AsyncIterator[pb.CoordinatorMessage]:
        if not token_matches(self.token, context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        messages = request_iterator.__aiter__()
        first = await messages.__anext__()
        assert first.HasField("register"), "the first message must be register"
        stream = Stream(first.register)
        self.streams.append(stream)
        stream.send(
            registered=pb.Registered(
                coordinator_id="test-coordinator",
                heartbeat_s=self.heartbeat_s,
                lease_s=self.lease_s,
                abandon=self.abandon(first.register),
            )
        )

        async def read() -> None:
            try:
                async for msg in messages:
                    stream.received.append(msg)
                    if msg.HasField("heartbeat") and self.ack_heartbeats:
                        stream.send(heartbeat_ack=pb.HeartbeatAck(seq=msg.heartbeat.seq))
                    if msg.completions and self.ack_completions:
                        stream.send(
                            completion_acks=[
                                pb.CompletionAck(run_id=c.run_id, accepted=self.accept_completions)
                                for c in msg.completions
                            ]
                        )
            finally:
                stream.outgoing.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (out := await stream.outgoing.get()) is not None:
                yield out
        finally:
            reader.cancel()
            stream.ended.set()

    async def wait_stream(self, count: int = 1, timeout: float = 20) -> Stream:
        """The `count`-th stream, once it exists."""

        async def there() -> bool:
            return len(self.streams) >= count

        await wait_until(there, timeout=timeout, what=f"stream #{count}")
        return self.streams[count - 1]

    async def wait_completion(self, stream: Stream, run_id: str, timeout: float = 20) -> pb.Completion:
        async def done() -> pb.Completion | None:
            return stream.completion(run_id)

        result: pb.Completion = await wait_until(done, timeout=timeout, what=f"completion of {run_id}")
        return result


def assignment(
    run_id: str, type_: str, payload_json: str, *, timeout_s: float = 30, attempt: int = 1
) -> pb.Assignment:
    return pb.Assignment(
        run_id=run_id,
        attempt=attempt,
        task_id=f"task-{run_id}",
        task_name=run_id,
        type=type_,
        payload_json=payload_json,
        timeout_s=timeout_s,
    )
