"""The Celery app its worker subprocess loads (`-A bench.peers.celery_app`).

Celery has no table to read timings back from, so the worker stamps each task itself: the
`task_prerun`/`task_postrun` signals record (due, started, finished) in memory and one background
thread pushes them to a Redis list in batches, off the task's path, so the measurement adds almost
nothing per task. `due` is the submitter's clock at submission (an argument of the task); all
clocks are this machine's.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import Celery, signals

BROKER_URL = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/13")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench")
DONE_KEY = os.environ.get("BENCH_CELERY_DONE_KEY", "bench:celery:done")
FLUSH_INTERVAL_S = 0.05

app = Celery("bench", broker=BROKER_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(due: float) -> None:
    """Does nothing: the benchmark measures the queue, not the work."""


_lock = threading.Lock()
_started: dict[str, tuple[float, float]] = {}
_done: list[str] = []


@signals.task_prerun.connect  # type: ignore[untyped-decorator]
def _on_prerun(task_id: str, args: tuple[Any, ...] = (), **_: Any) -> None:
    now = time.time()
    due = float(args[0]) if args else 0.0
    with _lock:
        _started[task_id] = (due, now)


@signals.task_postrun.connect  # type: ignore[untyped-decorator]
def _on_postrun(task_id: str, **_: Any) -> None:
    now = time.time()
    with _lock:
        due, started = _started.pop(task_id, (0.0, now))
        _done.append(f"{due:.6f} {started:.6f} {now:.6f}")


def _flush_forever() -> None:
    client = redis.Redis.from_url(BROKER_URL)
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        with _lock:
            batch = _done[:]
            _done.clear()
        if batch:
            client.rpush(DONE_KEY, *batch)


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start_flusher(**_: Any) -> None:
    threading.Thread(target=_flush_forever, name="bench-flusher", daemon=True).start()
