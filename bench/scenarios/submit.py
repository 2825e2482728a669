"""Submit rate alone: `bench.submit` (single POSTs and batches against a scheduler with no
coordinator), called as it is, on the harness's PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.database import BenchServer
from bench.scale import Scale


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    from bench import submit

    result: dict[str, Any] = await submit.main(scale.submit_quick, server.admin_dsn)
    return result
