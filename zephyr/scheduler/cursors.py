"""Opaque keyset cursors: the position after which the next page starts, as URL-safe text.

A cursor encodes a kind and a key (`t:<uuid>` for tasks, `r:<uuid>` for runs, `l:<int>` for log
lines), base64url without padding. A cursor of the wrong kind or that does not decode raises
ValidationError naming the `cursor` field.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from zephyr.errors import ValidationError

# Keyset pages go newest first with `id < $before`; the first page starts above every id.
FIRST_PAGE_BEFORE = uuid.UUID(int=(1 << 128) - 1)

T = TypeVar("T")


def encode(kind: str, key: object) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def _decode(kind: str, cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("the cursor is not one this API gave out", field="cursor") from None
    prefix, sep, key = text.partition(":")
    if prefix != kind or not sep:
        raise ValidationError("the cursor is not one this API gave out", field="cursor")
    return key


def decode_uuid(kind: str, cursor: str | None) -> uuid.UUID:
    """The id a page of `kind` continues below (FIRST_PAGE_BEFORE without a cursor)."""
    if not cursor:
        return FIRST_PAGE_BEFORE
    try:
        return uuid.UUID(_decode(kind, cursor))
    except ValueError:
        raise ValidationError("the cursor is not one this API gave out", field="cursor") from None


def decode_int(kind: str, cursor: str | None) -> int:
    """The integer key a page of `kind` continues after (0 without a cursor)."""
    if not cursor:
        return 0
    try:
        return int(_decode(kind, cursor))
    except ValueError:
        raise ValidationError("the cursor is not one this API gave out", field="cursor") from None


def page(
    kind: str, items: Sequence[T], limit: int, key: Callable[[T], object]
) -> tuple[Sequence[T], str | None]:
    """The first `limit` of `items` (read with `limit + 1`, to know whether more follow) and the
    cursor of the page after them (None when this is the last page)."""
    shown = items[:limit]
    return shown, encode(kind, key(shown[-1])) if len(items) > limit else None
