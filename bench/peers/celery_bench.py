"""Celery 5 with the Redis broker, threads x10: processing rate and due -> started latency.

Method (as for procrastinate and Zephyr): N tasks are queued before the worker starts, so the rate is
the worker's alone: N / (last finish - first start), stamped by the worker. Then tasks are sent one at
a time at a fixed rate into the running worker; latency is submission -> task start. The queue, the
result list and the Redis database (13 unless `BENCH_CELERY_BROKER` says otherwise) belong to this
run only and are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.pacing import paced, poll_until
from bench.procs import check_alive, spawn, version_of
from bench.scale import Scale
from bench.stats import latency_summary, rate
from tests.support.cluster import Service

CONCURRENCY = 10


async def run(scale: Scale, log_dir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    queue, done_key = f"bench-{tag}", f"bench:celery:done:{tag}"
    broker = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/13")
    env = {"BENCH_CELERY_BROKER": broker, "BENCH_CELERY_QUEUE": queue, "BENCH_CELERY_DONE_KEY": done_key}
    os.environ.update(env)  # celery_app reads them at import, here and in the worker
    from bench.peers import celery_app

    client = redis.Redis.from_url(broker)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise RuntimeError(
            f"the Celery peer needs Redis at {broker} ({exc}): start one (apt-get install redis-server) "
            "or point BENCH_CELERY_BROKER at one"
        ) from exc
    worker: Service | None = None
    try:
        count = scale.peer_tasks_celery
        await asyncio.to_thread(_send_many, celery_app, queue, count)
        worker = spawn(
            "celery-worker",
            [
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_app",
                "worker",
                "--pool=threads",
                f"--concurrency={CONCURRENCY}",
                f"--queues={queue}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
            ],
            log_dir,
            **env,
        )

        async def finished(target: int) -> bool:
            check_alive(worker)
            return int(await asyncio.to_thread(client.llen, done_key)) >= target

        await poll_until(lambda: finished(count), timeout_s=scale.scenario_timeout_s, what="celery burst")
        burst = _records(client, done_key, 0, count)
        seconds = max(r[2] for r in burst) - min(r[1] for r in burst)

        async def send_one(_index: int) -> None:
            celery_app.noop.apply_async(args=(time.time(),), queue=queue)

        trickle_count = int(scale.peer_rate * scale.peer_latency_s)
        await paced(scale.peer_rate, trickle_count, send_one, max_in_flight=1)
        await poll_until(
            lambda: finished(count + trickle_count),
            timeout_s=scale.scenario_timeout_s,
            what="celery trickle",
        )
        trickle = _records(client, done_key, count, count + trickle_count)
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        client.delete(queue, done_key, f"_kombu.binding.{queue}")
        client.close()
    return {
        "system": "celery",
        "version": version_of("celery"),
        "broker": "redis",
        "pool": f"threads x{CONCURRENCY}",
        "tasks": count,
        "processing_s": seconds,
        "processing_per_s": rate(count, seconds),
        "latency_rate_per_s": scale.peer_rate,
        "due_to_started": latency_summary([started - due for due, started, _ in trickle]),
        "due_to_finished": latency_summary([finished - due for due, _, finished in trickle]),
    }


def _send_many(celery_app: Any, queue: str, count: int) -> None:
    for _ in range(count):
        celery_app.noop.apply_async(args=(0.0,), queue=queue)


def _records(client: redis.Redis, key: str, start: int, stop: int) -> list[tuple[float, float, float]]:
    """(due, started, finished) of the tasks finished in positions [start, stop) of the list."""
    rows: list[bytes] = client.lrange(key, start, stop - 1)  # type: ignore[assignment]
    out: list[tuple[float, float, float]] = []
    for raw in rows:
        due, started, finished = (float(part) for part in raw.split())
        out.append((due, started, finished))
    return out
