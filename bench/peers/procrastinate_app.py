"""The procrastinate app its worker subprocess loads (`--app bench.peers.procrastinate_app.app`).

The database comes from `BENCH_PROCRASTINATE_DSN`, set by the harness for its throw-away database.
"""

from __future__ import annotations

import os

import procrastinate

QUEUE = "bench"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", ""))
)


@app.task(name="bench.noop", queue=QUEUE)  # type: ignore[untyped-decorator]
async def noop() -> None:
    """Does nothing: the benchmark measures the queue, not the work."""
