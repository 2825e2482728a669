"""Peer processes the harness starts: the same `Service` wrapper the test cluster uses."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from tests.support.cluster import Service


def spawn(name: str, args: list[str], log_dir: Path, **env: str) -> Service:
    """`python <args>` as a subprocess in its own session, output to `log_dir/<name>.log`."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return Service(name, [sys.executable, *args], merged, log_dir / f"{name}.log")


def check_alive(proc: Service) -> None:
    """Raise with the tail of its log if `proc` has exited: a dead peer must not look like a slow one."""
    if proc.process.poll() is not None:
        raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.output()[-3000:]}")


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"
