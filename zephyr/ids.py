"""Identifiers: UUIDv7, so that ids sort by creation time and keyset paging by id is paging by age."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_sequence = 0
_SEQUENCE_MAX = 0xFFF


def new_id() -> uuid.UUID:
    """Return a fresh RFC 9562 version-7 UUID, strictly increasing within this process.

    48-bit Unix milliseconds, then the 12-bit `rand_a` field used as a counter within the same
    millisecond (RFC 9562, method 1), then 62 random bits. If the counter would overflow, the
    timestamp is advanced by one millisecond, which keeps the order.
    """
    global _last_ms, _sequence
    with _lock:
        unix_ms = time.time_ns() // 1_000_000
        if unix_ms > _last_ms:
            _last_ms, _sequence = unix_ms, 0
        else:
            _sequence += 1
            if _sequence > _SEQUENCE_MAX:
                _last_ms, _sequence = _last_ms + 1, 0
        unix_ms, sequence = _last_ms, _sequence
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= sequence << 64
    value |= 0b10 << 62  # variant
    value |= rand_b
    return uuid.UUID(int=value)


def new_ids(count: int) -> list[uuid.UUID]:
    """Return `count` fresh UUIDv7 values in increasing order."""
    return [new_id() for _ in range(count)]
