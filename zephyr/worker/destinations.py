"""Where `http` tasks may connect: the worker's destination policy (ZEPHYR_HTTP_ALLOW_PRIVATE).

With private destinations refused, a request may only reach global unicast addresses: loopback,
RFC 1918 and unique-local, link-local (which holds the 169.254.169.254 cloud metadata service),
shared (100.64/10), multicast, reserved and unspecified addresses are refused, IPv4-mapped IPv6
addresses by the IPv4 address they carry.

The check sits where the connection is made, so nothing can slip between check and use:
- a host name is resolved by `GuardedResolver`, which hands the connector only allowed addresses
  (a name that resolves to a refused address is refused, whatever a second lookup would say);
- a literal address in a URL never reaches a resolver, so `check_url` checks it before each hop;
- redirects are followed one hop at a time by the executor, each hop checked the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(OSError):
    """The destination is an address this worker's policy refuses."""


@dataclass(frozen=True)
class DestinationPolicy:
    """`allow_private`: every address is allowed. Otherwise only global unicast addresses, plus
    the networks in `exempt` (an operator's explicit exceptions)."""

    allow_private: bool = True
    exempt: tuple[IPNetwork, ...] = ()

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be connected to, or None when it may."""
        if self.allow_private:
            return None
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.exempt):
            return None
        if ip.is_global and not ip.is_multicast:
            return None
        kind = (
            "loopback"
            if ip.is_loopback
            else "link-local (cloud metadata lives there)"
            if ip.is_link_local
            else "private"
            if ip.is_private
            else "not a public unicast"
        )
        return f"{ip} is a {kind} address and ZEPHYR_HTTP_ALLOW_PRIVATE=0"

    def check_url(self, url: URL) -> None:
        """Raise DestinationRefused when `url`'s host is a literal address the policy refuses
        (names are checked by GuardedResolver when the connection is made)."""
        host = (url.host or "").strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return  # a name: the resolver decides
        reason = self.refusal(host)
        if reason:
            raise DestinationRefused(f"refused {url.host}: {reason}")


class GuardedResolver(AbstractResolver):
    """Resolves names like `inner` (the default resolver) and keeps only allowed addresses."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [entry for entry in found if not self._policy.refusal(entry["host"])]
        if not allowed:
            reasons = sorted({self._policy.refusal(entry["host"]) or "" for entry in found})
            raise DestinationRefused(f"refused {host}: {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def refusal_in(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind an aiohttp connection error, if that was the cause."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DestinationRefused):
            return current
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return None


def networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)
