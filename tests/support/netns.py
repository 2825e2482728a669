"""A second "host" on this machine: a network namespace joined to this one by a veth pair.

    with other_host("i14") as host:
        coordinator listens on host.peer_ip (this namespace's end of the veth)
        worker argv = [*host.exec_prefix, sys.executable, ...]  (runs inside the namespace)

Needs root (`ip netns`, `ip link`). Names carry the caller's tag and a random suffix, so parallel
tests never collide; the namespace (and with it the veth pair) is deleted on exit. Traffic goes
only to the addresses of this pair.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class OtherHost:
    namespace: str
    host_ip: str  # this namespace's end: what the other host connects to
    ip: str  # the other host's own address
    link: str  # this namespace's end of the veth pair: set it down to cut the other host off

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@contextmanager
def other_host(tag: str) -> Iterator[OtherHost]:
    """A namespace `z<tag>-<hex>` with veth `v<tag>a<hex>` (here) / `v<tag>b<hex>` (there) on a
    random 10.<n>.<m>.0/30."""
    suffix = f"{random.randrange(16**4):04x}"
    namespace, here, there = f"z{tag}-{suffix}", f"v{tag}a{suffix}", f"v{tag}b{suffix}"
    assert len(here) <= 15, "interface names are at most 15 characters"
    net = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
    host = OtherHost(namespace, f"{net}.1", f"{net}.2", here)
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        try:
            _ip("link", "set", there, "netns", namespace)
            _ip("addr", "add", f"{host.host_ip}/30", "dev", here)
            _ip("link", "set", here, "up")
            _ip("netns", "exec", namespace, "ip", "addr", "add", f"{host.ip}/30", "dev", there)
            _ip("netns", "exec", namespace, "ip", "link", "set", there, "up")
            _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
            yield host
        finally:
            subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
