"""The worker's stream against a real gRPC server that speaks the protocol (tests/support/protocol_server.py).

The worker runs in-process through its real entry point `serve(config, stop)`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from tests.support.cluster import free_port, wait_until
from tests.support.protocol_server import ProtocolServer, Stream, assignment
from tests.support.worker import process_alive
from zephyr.config import WorkerConfig, load, parse_addr
from zephyr.v1 import worker_pb2 as pb
from zephyr.v1 import worker_pb2_grpc as pb_grpc
from zephyr.worker.agent import serve
from zephyr.worker.connection import Connection, StreamLost
from zephyr.worker.outbox import Outbox
from zephyr.worker.runner import Runner


@asynccontextmanager
async def running_worker(addrs: str, **env: str) -> AsyncIterator[asyncio.Event]:
    """serve() in this process; yields its stop event; on exit stops it (cancel if it hangs)."""
    environ = {"ZEPHYR_COORDINATORS": addrs, "ZEPHYR_WORKER_ID": "w-test", "ZEPHYR_HEARTBEAT_S": "0.1", **env}
    config = load(WorkerConfig, environ=environ)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, stop))
    try:
        yield stop
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise


@pytest.fixture
async def server() -> AsyncIterator[ProtocolServer]:
    srv = await ProtocolServer().start()
    yield srv
    await srv.stop()


async def truthy(value: object) -> object:
    return value


async def test_register_heartbeats_and_a_run_round_trip(server: ProtocolServer) -> None:
    async with running_worker(server.addr, ZEPHYR_WORKER_CONCURRENCY="7", ZEPHYR_SHELL_ALLOW="echo .*"):
        stream = await server.wait_stream()
        reg = stream.register
        assert (reg.worker_id, reg.capacity, reg.pid) == ("w-test", 7, os.getpid())
        assert list(reg.task_types) == ["http", "internal", "shell"]  # no SMTP, no publish backend
        assert list(reg.in_flight) == []
        await wait_until(lambda: truthy(len(stream.heartbeats) >= 3), what="heartbeats")
        seqs = [hb.seq for hb in stream.heartbeats]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert stream.heartbeats[0].free_slots == 7 and not stream.heartbeats[0].draining

        stream.send(
            assignments=[assignment("r1", "internal", '{"function": "zephyr.echo", "kwargs": {"a": 1}}')]
        )
        done = await server.wait_completion(stream, "r1")
        assert done.outcome == pb.RUN_OUTCOME_SUCCEEDED
        assert json.loads(done.result_json) == {"a": 1}
        assert done.attempt == 1 and done.duration_s >= 0


async def test_token_travels_as_bearer_metadata() -> None:
    srv = await ProtocolServer(token="tok").start()
    try:
        async with running_worker(srv.addr, ZEPHYR_CLUSTER_TOKEN="tok"):
            await srv.wait_stream()
    finally:
        await srv.stop()


async def test_shell_logs_arrive_before_the_completion_and_failures_carry_codes(
    server: ProtocolServer,
) -> None:
    async with running_worker(server.addr, ZEPHYR_SHELL_ALLOW="*", ZEPHYR_LOG_LINES_PER_RUN="50"):
        stream = await server.wait_stream()
        stream.send(
            assignments=[
                assignment("lines", "shell", json.dumps({"command": "seq 1 30; echo err >&2; exit 3"})),
                assignment("many", "shell", json.dumps({"command": "seq 1 1000"})),
                assignment("bad", "nosuchtype", "{}"),
            ]
        )
        lines = await server.wait_completion(stream, "lines")
        assert lines.outcome == pb.RUN_OUTCOME_FAILED
        assert (lines.error_code, json.loads(lines.result_json)) == ("exit_code", {"exit_code": 3})
        # every line of the run came up before (or with) its completion
        index = next(
            i for i, m in enumerate(stream.received) if any(c.run_id == "lines" for c in m.completions)
        )
        before = [x for m in stream.received[: index + 1] for x in m.logs if x.run_id == "lines"]
        assert [x.line for x in before if x.stream == pb.LOG_STREAM_STDOUT] == [str(i) for i in range(1, 31)]
        assert [x.line for x in before if x.stream == pb.LOG_STREAM_STDERR] == ["err"]

        many = await server.wait_completion(stream, "many")
        assert many.outcome == pb.RUN_OUTCOME_SUCCEEDED
        kept = [x for x in stream.logs if x.run_id == "many"]
        assert len(kept) == 51  # the cap (its "started" system line counts) plus one truncation marker
        assert kept[-1].stream == pb.LOG_STREAM_SYSTEM and "truncated" in kept[-1].line
        bad = await server.wait_completion(stream, "bad")
        assert (bad.outcome, bad.error_code, bad.retryable) == (
            pb.RUN_OUTCOME_FAILED,
            "unsupported_type",
            True,
        )
        # several items shared one message at least once: batching happened
        assert max(len(m.logs) for m in stream.received) > 1


async def test_timeout_and_cancel_end_runs_and_kill_their_process_groups(
    server: ProtocolServer, tmp_path: Path
) -> None:
    async with running_worker(server.addr, ZEPHYR_SHELL_ALLOW="*"):
        stream = await server.wait_stream()
        for name, timeout in (("slow", 0.5), ("cancelme", 60)):
            cmd = f"sleep 300 & echo $! > {tmp_path / name}; wait"
            stream.send(
                assignments=[assignment(name, "shell", json.dumps({"command": cmd}), timeout_s=timeout)]
            )
        slow = await server.wait_completion(stream, "slow")
        assert (slow.outcome, slow.error_code, slow.retryable) == (pb.RUN_OUTCOME_TIMED_OUT, "timeout", True)
        await wait_until(lambda: truthy((tmp_path / "cancelme").exists()), what="child started")
        stream.send(cancels=[pb.RunRef(run_id="cancelme", attempt=1)])
        cancelled = await server.wait_completion(stream, "cancelme")
        assert cancelled.outcome == pb.RUN_OUTCOME_CANCELLED
        for name in ("slow", "cancelme"):
            pid = int((tmp_path / name).read_text())

            async def gone(pid: int = pid) -> bool:
                return not process_alive(pid)

            await wait_until(gone, what=f"{name} child gone")


async def test_unacked_completions_are_listed_and_resent_after_reconnect_and_abandoned_runs_are_silent(
    server: ProtocolServer,
) -> None:
    server.ack_completions = False
    async with running_worker(server.addr):
        first = await server.wait_stream()
        first.send(
            assignments=[
                assignment("done", "internal", '{"function": "zephyr.noop"}'),
                assignment("long", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 60}}'),
                assignment("taken", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 60}}'),
            ]
        )
        await server.wait_completion(first, "done")
        server.ack_completions = True
        server.abandon = lambda reg: [ref for ref in reg.in_flight if ref.run_id == "taken"]
        first.close()  # the coordinator drops the stream
        second = await server.wait_stream(2)
        assert sorted(ref.run_id for ref in second.register.in_flight) == ["done", "long", "taken"]
        again = await server.wait_completion(second, "done")
        assert again.outcome == pb.RUN_OUTCOME_SUCCEEDED
        # "taken" was stopped without a report; "long" still runs and is cancelled on request
        second.send(cancels=[pb.RunRef(run_id="long", attempt=1)])
        await server.wait_completion(second, "long")
        assert second.completion("taken") is None and first.completion("taken") is None
        # acked now: a third stream lists nothing and resends nothing
        second.close()
        third = await server.wait_stream(3)
        assert list(third.register.in_flight) == []
        await wait_until(lambda: truthy(len(third.heartbeats) >= 2), what="heartbeats on stream 3")
        assert third.completions == []


async def test_a_stream_without_heartbeat_acks_is_dropped_and_replaced(server: ProtocolServer) -> None:
    server.lease_s = 0.5
    server.ack_heartbeats = False
    async with running_worker(server.addr):
        first = await server.wait_stream()
        await server.wait_stream(2)
        await asyncio.wait_for(first.ended.wait(), 10)


async def test_reconnects_to_another_address_when_one_is_down(server: ProtocolServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with running_worker(f"{dead},{server.addr},{dead}"):
        stream = await server.wait_stream()
        stream.close()
        await server.wait_stream(2)


async def test_a_call_refused_before_register_is_written_counts_as_a_lost_stream() -> None:
    """A refused connection can finish the call before Register is written; that is StreamLost, not a crash."""
    addr = parse_addr(f"127.0.0.1:{free_port()}")
    outbox = Outbox()
    connection = Connection(
        worker_id="w-test",
        addrs=[addr],
        token=None,
        task_types=["internal"],
        heartbeat_s=0.1,
        runner=Runner({}, outbox, capacity=1, log_lines_per_run=10, environ={}),
        outbox=outbox,
    )
    async with grpc.aio.insecure_channel(str(addr)) as channel:
        call = pb_grpc.WorkerGatewayStub(channel).Connect(None)
        assert await call.code() == grpc.StatusCode.UNAVAILABLE  # the call has ended
        with pytest.raises(StreamLost):
            await connection._converse(addr, call)


async def test_coordinator_drain_reports_draining_and_cancels_after_grace(server: ProtocolServer) -> None:
    async with running_worker(server.addr):
        stream = await server.wait_stream()
        stream.send(
            assignments=[
                assignment("short", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 0.2}}'),
                assignment("forever", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 600}}'),
            ]
        )
        await wait_until(
            lambda: truthy(stream.heartbeats and stream.heartbeats[-1].running == 2), what="running"
        )
        stream.send(drain=pb.Drain(grace_s=1.0))
        await wait_until(
            lambda: truthy(any(hb.draining for hb in stream.heartbeats)), what="draining heartbeat"
        )
        assert all(hb.free_slots == 0 for hb in stream.heartbeats if hb.draining)
        assert (await server.wait_completion(stream, "short")).outcome == pb.RUN_OUTCOME_SUCCEEDED
        forever = await server.wait_completion(stream, "forever")
        assert (forever.outcome, forever.error_code) == (pb.RUN_OUTCOME_CANCELLED, "worker_draining")


async def test_stop_drains_lets_runs_finish_then_returns(server: ProtocolServer) -> None:
    async with running_worker(server.addr, ZEPHYR_DRAIN_S="30") as stop:
        stream = await server.wait_stream()
        stream.send(
            assignments=[
                assignment("r", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 0.5}}')
            ]
        )
        await wait_until(
            lambda: truthy(stream.heartbeats and stream.heartbeats[-1].running == 1), what="running"
        )
        stop.set()
        await wait_until(
            lambda: truthy(any(hb.draining for hb in stream.heartbeats)), what="draining heartbeat"
        )
    # the context exit waited for serve() to return: the run finished and was reported, not cancelled
    assert stream.completion("r") is not None
    assert stream.completion("r").outcome == pb.RUN_OUTCOME_SUCCEEDED  # type: ignore[union-attr]
    assert stream.ended.is_set() or await asyncio.wait_for(stream.ended.wait(), 5)


async def test_second_signal_cancel_is_quick_and_kills_process_groups(
    server: ProtocolServer, tmp_path: Path
) -> None:
    config = load(
        WorkerConfig,
        environ={"ZEPHYR_COORDINATORS": server.addr, "ZEPHYR_SHELL_ALLOW": "*", "ZEPHYR_HEARTBEAT_S": "0.1"},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, stop))
    stream: Stream = await server.wait_stream()
    pid_file = tmp_path / "pid"
    stream.send(
        assignments=[
            assignment("s", "shell", json.dumps({"command": f"sleep 300 & echo $! > {pid_file}; wait"}))
        ]
    )
    await wait_until(lambda: truthy(pid_file.exists()), what="child started")
    stop.set()
    await wait_until(lambda: truthy(any(hb.draining for hb in stream.heartbeats)), what="draining")
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    pid = int(pid_file.read_text())
    await wait_until(lambda: truthy(not process_alive(pid)), what="child gone")


async def test_metrics_endpoint_counts_runs(server: ProtocolServer) -> None:
    import aiohttp

    port = free_port()
    async with running_worker(server.addr, ZEPHYR_METRICS_ADDR=f"127.0.0.1:{port}"):
        stream = await server.wait_stream()
        stream.send(assignments=[assignment("m1", "internal", '{"function": "zephyr.noop"}')])
        await server.wait_completion(stream, "m1")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            text = await resp.text()
        assert resp.status == 200
        assert 'zephyr_worker_runs_finished_total{outcome="succeeded",type="internal"}' in text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ZEPHYR_SMTP_URL": "imap://user:pw-secret-1@host"},
            "ZEPHYR_SMTP_URL: scheme must be smtp:// or smtps://",
        ),
        (
            {"ZEPHYR_WORKER_IMPORTS": "no_such_module_abc"},
            "ZEPHYR_WORKER_IMPORTS: cannot import no_such_module_abc",
        ),
        ({"ZEPHYR_SHELL_ALLOW": "(unclosed"}, "ZEPHYR_SHELL_ALLOW: invalid value"),
    ],
)
async def test_misconfiguration_stops_the_worker_with_one_line_naming_the_variable(
    env: dict[str, str], expected: str
) -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zephyr.cli.main",
        "worker",
        env={**os.environ, "ZEPHYR_COORDINATORS": f"127.0.0.1:{free_port()}", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert expected in out.decode()
    assert "pw-secret-1" not in out.decode()


async def test_stop_cancels_and_reports_what_outlives_the_drain_grace(server: ProtocolServer) -> None:
    async with running_worker(server.addr, ZEPHYR_DRAIN_S="0.5") as stop:
        stream = await server.wait_stream()
        payload = '{"function": "zephyr.sleep", "kwargs": {"seconds": 600}}'
        stream.send(assignments=[assignment("long", "internal", payload)])
        await wait_until(
            lambda: truthy(stream.heartbeats and stream.heartbeats[-1].running == 1), what="running"
        )
        stop.set()
        done = await server.wait_completion(stream, "long")
    assert (done.outcome, done.error_code, done.retryable) == (
        pb.RUN_OUTCOME_CANCELLED,
        "worker_draining",
        True,
    )
