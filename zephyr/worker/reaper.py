"""Process groups that die with the worker, even when the worker is killed with SIGKILL.

A shell run executes in a process group of its own, which the executor kills when the run ends.
A worker killed outright ends nothing: its commands would run on, orphaned. So the first shell run
starts a small watchdog process that holds the read end of a pipe whose only write end is the
worker's. The worker tells it each group it starts and each it has finished with; when the pipe
closes (the kernel closes it when the worker dies, however it dies), the watchdog kills every group
still listed and exits. A parent-death signal alone (PR_SET_PDEATHSIG) would reach only the
group's first process, not the children a shell command forks.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import subprocess
import sys
from typing import IO

log = logging.getLogger(__name__)

# The watchdog: a plain interpreter without site packages, reading "+pgid" / "-pgid" lines.
WATCHDOG = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    pgid = int(line[1:])
    if line[0] == "+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupReaper:
    """Registers process groups with the watchdog; started on first use. One per process
    (`REAPER`): it lives as long as the worker, and its pipe closes when the worker ends."""

    def __init__(self) -> None:
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None

    def track(self, pgid: int) -> None:
        """From now on, `pgid` is killed if the worker dies."""
        self._send(f"+{pgid}\n")

    def untrack(self, pgid: int) -> None:
        """`pgid` is over (killed by the executor): forget it."""
        if self._pipe is not None:
            self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        if self._pipe is None or (self._watchdog is not None and self._watchdog.poll() is not None):
            self._start()
        assert self._pipe is not None
        try:
            self._pipe.write(line.encode())
            self._pipe.flush()
        except OSError as exc:  # the watchdog died: the next run starts another
            log.warning("process group watchdog gone: %s", exc)
            self._pipe = None

    def _start(self) -> None:
        # Its own session: a terminal's Ctrl-C for the worker must not stop the watchdog first.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-S", "-c", WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pipe = self._watchdog.stdin
        atexit.register(self.close)  # a clean exit reaps it too (a killed worker just closes the pipe)

    def close(self) -> None:
        """Close the pipe (the watchdog kills what is left and exits) and reap the watchdog."""
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None


REAPER = GroupReaper()
