"""One worker alone holding 1,000 and 10,000 sleeps: `bench.worker_rss` (the worker's own
measurement against a stub gateway), called as it is so the two never disagree on method.

The cluster-level figure (2 workers behind a real coordinator) is the `concurrency` scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.database import BenchServer
from bench.scale import Scale


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    from bench import worker_rss

    result: dict[str, Any] = await worker_rss.main(list(scale.worker_rss_counts), scale.worker_rss_sleep_s)
    return result
