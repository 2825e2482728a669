"""Peers: procrastinate and Celery on the same no-op workload, in this same run (see bench/peers/)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.database import BenchServer
from bench.peers import celery_bench, procrastinate_bench
from bench.scale import Scale

log = logging.getLogger(__name__)


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    """{peer: figures}, or {peer: {"error": ...}} for a peer that could not be measured."""
    runners: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "procrastinate": lambda: procrastinate_bench.run(server, scale, log_dir),
        "celery": lambda: celery_bench.run(scale, log_dir),
    }
    out: dict[str, Any] = {}
    for name, runner in runners.items():
        try:
            out[name] = await runner()
        except Exception as exc:  # one peer failing must not hide the other
            log.exception("peer %s failed", name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
