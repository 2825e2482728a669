"""RSS of one worker holding 1,000 and 10,000 concurrent `zephyr.sleep` runs.

    .venv/bin/python -m bench.worker_rss [--counts 1000,10000] [--sleep-s 20]

For each count: starts a real worker process (`zephyr worker`, concurrency = count) against a
small gRPC server in this script that speaks the worker protocol (Register -> Registered,
heartbeat acks, completion acks), assigns `count` runs of `zephyr.sleep` in messages of 500,
waits until the worker's heartbeats report them all running, samples the worker's RSS from
/proc while they are held, then waits for every completion. Writes
bench/results/worker_rss.json. Target: 10,000 in flight with <= 200 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from zephyr.v1 import worker_pb2 as pb
from zephyr.v1 import worker_pb2_grpc as pb_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "worker_rss.json"
ASSIGNMENTS_PER_MESSAGE = 500
TARGET_MB = 200.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Gateway(pb_grpc.WorkerGatewayServicer):
    """Just enough coordinator: registers, acks, records heartbeats and completions."""

    def __init__(self) -> None:
        self.outgoing: asyncio.Queue[pb.CoordinatorMessage] = asyncio.Queue()
        self.registered = asyncio.Event()
        self.running = 0
        self.completed: dict[str, int] = {}
        self.heartbeat = asyncio.Event()

    async def Connect(
        self, request_iterator: AsyncIterator[pb.WorkerMessage], context: Any
    ) -> AsyncIterator[pb.CoordinatorMessage]:
        async def read() -> None:
            async for msg in request_iterator:
                if msg.HasField("register"):
                    self.outgoing.put_nowait(
                        pb.CoordinatorMessage(
                            registered=pb.Registered(coordinator_id="bench", heartbeat_s=0.5, lease_s=30)
                        )
                    )
                    self.registered.set()
                if msg.HasField("heartbeat"):
                    self.running = msg.heartbeat.running
                    self.heartbeat.set()
                    self.outgoing.put_nowait(
                        pb.CoordinatorMessage(heartbeat_ack=pb.HeartbeatAck(seq=msg.heartbeat.seq))
                    )
                if msg.completions:
                    for c in msg.completions:
                        self.completed[c.run_id] = c.outcome
                    self.outgoing.put_nowait(
                        pb.CoordinatorMessage(
                            completion_acks=[
                                pb.CompletionAck(run_id=c.run_id, accepted=True) for c in msg.completions
                            ]
                        )
                    )

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await self.outgoing.get()
        finally:
            reader.cancel()

    async def wait_heartbeat(self) -> int:
        self.heartbeat.clear()
        await self.heartbeat.wait()
        return self.running


async def measure(count: int, sleep_s: float) -> dict[str, Any]:
    gateway = Gateway()
    server = grpc.aio.server()
    pb_grpc.add_WorkerGatewayServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    env = {
        **os.environ,
        "ZEPHYR_COORDINATORS": f"127.0.0.1:{port}",
        "ZEPHYR_WORKER_CONCURRENCY": str(count),
        "ZEPHYR_WORKER_ID": f"bench-rss-{count}",
        "ZEPHYR_HEARTBEAT_S": "0.5",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zephyr.cli.main", "worker", env=env, start_new_session=True
    )
    try:
        await asyncio.wait_for(gateway.registered.wait(), 30)
        await gateway.wait_heartbeat()
        idle_mb = rss_mb(proc.pid)
        payload = json.dumps({"function": "zephyr.sleep", "kwargs": {"seconds": sleep_s}})
        started = time.monotonic()
        for first in range(0, count, ASSIGNMENTS_PER_MESSAGE):
            batch = [
                pb.Assignment(
                    run_id=f"run-{i}",
                    attempt=1,
                    task_id=f"task-{i}",
                    type="internal",
                    payload_json=payload,
                    timeout_s=sleep_s * 10,
                )
                for i in range(first, min(count, first + ASSIGNMENTS_PER_MESSAGE))
            ]
            gateway.outgoing.put_nowait(pb.CoordinatorMessage(assignments=batch))
        while await gateway.wait_heartbeat() < count:
            if time.monotonic() - started > sleep_s:
                raise RuntimeError(f"only {gateway.running} of {count} running after {sleep_s}s")
        all_running_s = time.monotonic() - started
        samples = []
        for _ in range(4):  # a few heartbeats' worth while all are held
            samples.append(rss_mb(proc.pid))
            running = await gateway.wait_heartbeat()
            if running < count:
                break
        held = gateway.running
        while len(gateway.completed) < count:
            await asyncio.sleep(0.1)
            if time.monotonic() - started > sleep_s * 5 + 30:
                raise RuntimeError(f"only {len(gateway.completed)} of {count} completions")
        done_s = time.monotonic() - started
        succeeded = sum(1 for o in gateway.completed.values() if o == pb.RUN_OUTCOME_SUCCEEDED)
        return {
            "runs": count,
            "sleep_s": sleep_s,
            "idle_rss_mb": round(idle_mb, 1),
            "held_rss_mb": round(max(samples), 1),
            "held_running": held,
            "per_run_kb": round((max(samples) - idle_mb) * 1024 / count, 2),
            "all_running_after_s": round(all_running_s, 3),
            "all_completed_after_s": round(done_s, 3),
            "succeeded": succeeded,
            "within_target": max(samples) <= TARGET_MB,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await server.stop(0)


async def main(counts: list[int], sleep_s: float) -> dict[str, Any]:
    results = []
    for count in counts:
        result = await measure(count, sleep_s)
        print(json.dumps(result), flush=True)
        results.append(result)
    return {
        "benchmark": "worker_rss",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
        "target_mb": TARGET_MB,
        "results": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", default="1000,10000", help="comma-separated run counts")
    parser.add_argument("--sleep-s", type=float, default=20.0, help="seconds each zephyr.sleep run sleeps")
    args = parser.parse_args()
    report = asyncio.run(main([int(c) for c in args.counts.split(",")], args.sleep_s))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
