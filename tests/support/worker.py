"""Helpers for worker tests: a RunContext that records log lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from zephyr.worker.executors.base import RunContext


@dataclass
class RecordedLogs:
    """Log lines an executor wrote, as (stream, line)."""

    lines: list[tuple[int, str]] = field(default_factory=list)

    async def log(self, stream: int, line: str, cut: bool = False) -> None:
        self.lines.append((stream, line + (" [line cut]" if cut else "")))

    def text(self, stream: int) -> list[str]:
        return [line for s, line in self.lines if s == stream]


def make_context(
    logs: RecordedLogs | None = None, *, timeout_s: float = 30.0, run_id: str = "run-1"
) -> RunContext:
    logs = logs or RecordedLogs()
    return RunContext(
        run_id=run_id, attempt=1, task_id="task-1", task_name="test", timeout_s=timeout_s, log=logs.log
    )


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a reaped-later zombie has finished running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")
