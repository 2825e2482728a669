"""Identifiers: UUIDv7, so that ids sort by creation time and keyset paging by id is paging by age."""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> uuid.UUID:
    """Return a fresh RFC 9562 version-7 UUID (48-bit Unix ms timestamp, then random bits)."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # 62 bits rand_b
    return uuid.UUID(int=value)


def new_ids(count: int) -> list[uuid.UUID]:
    """Return `count` fresh UUIDv7 values."""
    return [new_id() for _ in range(count)]
