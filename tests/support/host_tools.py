"""Real tools from the host's package registries, installed by the tests that need them.

`make test` must pass on a fresh machine with nothing installed by hand, so a test that drives a
real Prometheus, Chromium or a container engine installs it here first (Debian packages as root,
npm packages into a cache folder). Where that cannot work (not root, no apt-get, no npm), the test
is skipped with the reason, never counted as passed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

LOCK_PATH = Path("/tmp/zephyr-test-host-tools.lock")
NPM_CACHE_DIR = Path(f"/tmp/zephyr-test-npm-{os.getuid()}")
APT_TIMEOUT_S = 900


@contextmanager
def _host_lock() -> Iterator[None]:
    """One installer at a time across pytest processes (apt and npm both dislike company)."""
    with LOCK_PATH.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_install(packages: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)


def require_debian_packages(binaries: dict[str, str]) -> None:
    """Make each binary (name -> Debian package providing it) available, or skip the test saying why."""
    missing = {name: package for name, package in binaries.items() if shutil.which(name) is None}
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"needs {', '.join(sorted(missing))} (Debian: {', '.join(sorted(set(missing.values())))})"
        )
    packages = sorted(set(missing.values()))
    with _host_lock():
        result = _apt_install(packages)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=APT_TIMEOUT_S)
            result = _apt_install(packages)
    still_missing = [name for name in missing if shutil.which(name) is None]
    if still_missing:
        pytest.fail(
            f"apt-get install {' '.join(packages)} left {still_missing} missing: {result.stderr[-500:]}"
        )


def require_npm_packages(packages: list[str]) -> Path:
    """`node_modules` folder holding the npm packages (name@version), installed once per machine."""
    if shutil.which("npm") is None:
        pytest.skip(f"needs npm for {', '.join(packages)}")
    NPM_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    modules = NPM_CACHE_DIR / "node_modules"
    wanted = [spec.rsplit("@", 1)[0] if spec.rfind("@") > 0 else spec for spec in packages]
    with _host_lock():
        if not all((modules / name / "package.json").exists() for name in wanted):
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE_DIR), *packages],
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT_S,
            )
            if result.returncode != 0:
                pytest.fail(f"npm install {' '.join(packages)} failed: {result.stderr[-500:]}")
    return modules


def require_root(reason: str) -> None:
    """Skip unless running as root (network namespaces, package installs)."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {reason}")
