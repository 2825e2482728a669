"""Where the time goes: py-spy sampling the services during a burst.

py-spy attaches to running processes from outside (ptrace), so the services run unmodified. Each
profile is kept as py-spy's raw collapsed stacks (`<name>.txt` in the log directory, loadable in
speedscope or flamegraph.pl) and summarised here as the functions with the most samples on top of
the stack (self, any code) and anywhere in it (inclusive, Zephyr's own functions only). Only busy samples count: py-spy leaves out threads
waiting in the kernel (an idle event loop in epoll).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLE_RATE_HZ = 200
TOP = 15
_LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy_path() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed (pip install '.[bench]')")
    return found


class Recorder:
    """`py-spy record` on one process until `stop()`; `summary()` reads what it wrote."""

    def __init__(self, name: str, pid: int, out_dir: Path) -> None:
        self.name = name
        self.output = out_dir / f"profile-{name}.txt"
        self._log = (out_dir / f"py-spy-{name}.log").open("wb")
        self.process = subprocess.Popen(
            [
                py_spy_path(),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(self.output),
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--nonblocking",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """SIGINT makes py-spy write its output and exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()

    def summary(self, seconds: float) -> dict[str, Any]:
        if not self.output.exists():
            return {"error": f"py-spy wrote nothing; see {self._log.name}"}
        return summarise(self.output.read_text(errors="replace"), seconds)


def _ours(frame: str) -> bool:
    """Frames of Zephyr's own code (the service entry points excepted): where a change would go."""
    return "(zephyr/" in frame and "(zephyr/cli/" not in frame


def _frame(raw: str) -> str:
    """`func (path/file.py:123)` -> `func (path/file.py)`: lines of one function add up."""
    return _LINE_NUMBER.sub(")", raw.strip())


def summarise(collapsed: str, seconds: float, top: int = TOP) -> dict[str, Any]:
    """Self and inclusive sample shares of collapsed stacks (`a;b;c 12` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(part) for part in stack.split(";") if part.strip()]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if _ours(frame):
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": frame, "pct": round(100 * n / total, 1)} for frame, n in counter.most_common(top)]

    return {
        "samples": total,
        # Busy samples over the possible ones: roughly the share of one core the process used.
        "busy_core_share": round(total / (SAMPLE_RATE_HZ * seconds), 2) if seconds > 0 else None,
        "self": share(own) if total else [],
        # Only Zephyr's functions: the interpreter's and the libraries' outer frames say nothing.
        "inclusive_zephyr": share(inclusive) if total else [],
    }


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def _postgres_pids(postmaster_pid: int | None) -> list[int]:
    import psutil

    if postmaster_pid is None:
        return []
    try:
        root = psutil.Process(postmaster_pid)
        return [postmaster_pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class CpuMeter:
    """CPU seconds each service and the PostgreSQL server used between `start()` and `stop()`.

    On a 2-core machine this is the first question: who is using the cores. PostgreSQL is counted
    only when the harness runs its own embedded server (another server's processes are shared).
    """

    def __init__(self, services: dict[str, int], postmaster_pid: int | None) -> None:
        self.services = services
        self.postmaster_pid = postmaster_pid
        self._before: dict[str, float] = {}
        self._pg_before: dict[int, float] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._before = {name: _cpu_seconds(pid) for name, pid in self.services.items()}
        self._pg_before = {pid: _cpu_seconds(pid) for pid in _postgres_pids(self.postmaster_pid)}

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        used = {name: _cpu_seconds(pid) - self._before[name] for name, pid in self.services.items()}
        if self.postmaster_pid is not None:
            used["postgres"] = sum(
                _cpu_seconds(pid) - self._pg_before.get(pid, 0.0)
                for pid in _postgres_pids(self.postmaster_pid)
            )
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {name: round(value, 2) for name, value in used.items()},
            "cores_busy": {name: round(value / wall, 2) for name, value in used.items()} if wall > 0 else {},
        }


CLAIM_METRICS = {
    "zephyr_claims_total": "claims",
    "zephyr_claim_batch_size_sum": "claimed",
    "zephyr_claim_duration_seconds_sum": "claim_s",
}


async def coordinator_claim_stats(metrics_url: str) -> dict[str, Any]:
    """Claim statements, runs per claim and time per claim, from the coordinator's /metrics."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        text = await resp.text()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in CLAIM_METRICS:
                found[CLAIM_METRICS[sample.name]] = found.get(CLAIM_METRICS[sample.name], 0.0) + sample.value
    claims = found.get("claims", 0.0)
    return {
        **found,
        "runs_per_claim": round(found.get("claimed", 0.0) / claims, 1) if claims else None,
        "ms_per_claim": round(1000 * found.get("claim_s", 0.0) / claims, 2) if claims else None,
    }
