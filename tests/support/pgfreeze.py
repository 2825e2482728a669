"""A frozen PostgreSQL: every process of a server whose data directory is ours stopped (SIGSTOP).

Connections stay open and hang, as with a server that stalls (a full disk, a stuck storage
controller): the harshest outage for clients, which neither fail nor progress.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


def server_pids(data_dir: Path) -> list[int]:
    """The postmaster and every process it forked."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
    return [*children, postmaster]


@contextlib.contextmanager
def frozen(data_dir: Path) -> Iterator[None]:
    """Every server process stopped (SIGSTOP) for the duration; continued after, whatever happens."""
    pids = server_pids(data_dir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
