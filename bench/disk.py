"""The disk's own flush latency, measured beside a scenario: is a latency tail ours or the disk's?

Every commit of a durable PostgreSQL waits for an fdatasync of its WAL. When the disk holds a
flush for 100 ms, every commit in flight waits 100 ms, whatever the scheduler does. The probe
writes 8 KB (one WAL page) and fdatasyncs it every `interval_s` on the filesystem of the
database's data, in a thread, while the scenario runs, and reports what the disk alone did in
those seconds. At 50 flushes a second it adds under a tenth to PostgreSQL's own 600.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.report import TARGET_P99_MS
from bench.stats import latency_summary

PAGE = b"\0" * 8192
STALL_MS = TARGET_P99_MS  # a flush longer than the trickle's p99 target breaks it for every commit
STALL_MARGIN_S = 0.03


class FlushProbe:
    """`with FlushProbe(directory) as probe: ...` then `probe.summary()`."""

    def __init__(self, directory: Path | None, interval_s: float = 0.02) -> None:
        self.directory = directory or Path(tempfile.gettempdir())
        self.interval_s = interval_s
        self.latencies_s: list[float] = []
        self.stall_windows: list[tuple[float, float]] = []  # (wall-clock start, end) of each stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flush-probe", daemon=True)

    def __enter__(self) -> FlushProbe:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        fd, path = tempfile.mkstemp(prefix="flush-probe-", dir=self.directory)
        try:
            os.write(fd, PAGE)
            os.fsync(fd)
            while not self._stop.wait(self.interval_s):
                os.pwrite(fd, PAGE, 0)
                wall, started = time.time(), time.perf_counter()
                os.fdatasync(fd)
                took = time.perf_counter() - started
                self.latencies_s.append(took)
                if took * 1000 > STALL_MS:
                    self.stall_windows.append((wall, wall + took))
        finally:
            os.close(fd)
            os.unlink(path)

    def during_stall(self, at: float, margin_s: float = STALL_MARGIN_S) -> bool:
        """Whether wall-clock time `at` falls in a stall the probe saw (widened by `margin_s`: a
        commit begun just before the stall, or queued just after it, waits for it too)."""
        return any(start - margin_s <= at <= end + margin_s for start, end in self.stall_windows)

    def summary(self) -> dict[str, Any]:
        """Flush latencies (ms) and the stalls longer than STALL_MS: how many, and their sum."""
        return {
            "directory": str(self.directory),
            "interval_s": self.interval_s,
            **latency_summary(self.latencies_s),
            "stall_ms": STALL_MS,
            "stalls": len(self.stall_windows),
            "stalled_ms_total": sum(end - start for start, end in self.stall_windows) * 1000,
        }
