"""Identifiers: UUIDv7, so that ids sort by creation time and keyset paging by id is paging by age."""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

_lock = threading.Lock()
# The last (48-bit Unix milliseconds << 12 | 12-bit counter) handed out.
_last_stamp = 0
_SEQUENCE_BITS = 12
_SEQUENCE_MASK = (1 << _SEQUENCE_BITS) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B_MASK = (1 << 62) - 1


def _reserve_stamps(count: int) -> int:
    """The first of `count` consecutive stamps, each above every stamp handed out before.

    A stamp is the 48-bit Unix milliseconds followed by the 12-bit `rand_a` counter (RFC 9562,
    method 1): a new millisecond starts its counter at 0; a counter that would overflow carries
    into the millisecond, which keeps the order.
    """
    global _last_stamp
    with _lock:
        first = max((time.time_ns() // 1_000_000) << _SEQUENCE_BITS, _last_stamp + 1)
        _last_stamp = first + count - 1
    return first


def _uuid7(stamp: int, rand_b: int) -> uuid.UUID:
    unix_ms, sequence = stamp >> _SEQUENCE_BITS, stamp & _SEQUENCE_MASK
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | sequence << 64 | _VARIANT | rand_b & _RAND_B_MASK
    # asyncpg's uuid.UUID subclass (what it returns for uuid columns): built from bytes in C,
    # about a fifth of uuid.UUID(int=...)'s cost, and asyncpg encodes it without a conversion.
    made: uuid.UUID = AsyncpgUUID(value.to_bytes(16))
    return made


def new_id() -> uuid.UUID:
    """Return a fresh RFC 9562 version-7 UUID, strictly increasing within this process.

    48-bit Unix milliseconds, then the 12-bit `rand_a` field used as a counter within the same
    millisecond, then 62 random bits.
    """
    return _uuid7(_reserve_stamps(1), int.from_bytes(os.urandom(8)))


def new_ids(count: int) -> list[uuid.UUID]:
    """Return `count` fresh UUIDv7 values in increasing order (as `new_id` would, one lock and one
    read of the random source for them all)."""
    if count <= 0:
        return []
    first = _reserve_stamps(count)
    randoms = struct.unpack(f">{count}Q", os.urandom(8 * count))
    return [_uuid7(first + index, rand_b) for index, rand_b in enumerate(randoms)]
