"""Keyset cursors: the position after which the next page starts, as URL-safe text.

A cursor is a kind letter and a key: `t<uuid hex>` for tasks, `r<uuid hex>` for runs, `l<int>` for
log lines (CURSOR_PATTERNS, which /openapi.json publishes). Clients treat them as opaque. A cursor
of the wrong kind or shape raises ValidationError naming the `cursor` field.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from zephyr.errors import ValidationError

# Keyset pages go newest first with `id < $before`; the first page starts above every id.
FIRST_PAGE_BEFORE = uuid.UUID(int=(1 << 128) - 1)
# A log line id is a bigint: at most 18 digits keeps every cursor within its range.
CURSOR_PATTERNS = {"t": "^t[0-9a-f]{32}$", "r": "^r[0-9a-f]{32}$", "l": "^l[0-9]{1,18}$"}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in CURSOR_PATTERNS.items()}

T = TypeVar("T")


def encode(kind: str, key: object) -> str:
    """The cursor of `key` (a uuid, as object or text, for tasks and runs; an int for log lines)."""
    if kind == "l":
        return f"l{int(str(key))}"
    return f"{kind}{uuid.UUID(str(key)).hex}"


def _key(kind: str, cursor: str) -> str:
    if not _COMPILED[kind].fullmatch(cursor):
        raise ValidationError("the cursor is not one this API gave out", field="cursor")
    return cursor[1:]


def decode_uuid(kind: str, cursor: str | None) -> uuid.UUID:
    """The id a page of `kind` continues below (FIRST_PAGE_BEFORE without a cursor)."""
    if cursor is None:
        return FIRST_PAGE_BEFORE
    return uuid.UUID(hex=_key(kind, cursor))


def decode_int(kind: str, cursor: str | None) -> int:
    """The integer key a page of `kind` continues after (0 without a cursor)."""
    if cursor is None:
        return 0
    return int(_key(kind, cursor))


def page(
    kind: str, items: Sequence[T], limit: int, key: Callable[[T], object]
) -> tuple[Sequence[T], str | None]:
    """The first `limit` of `items` (read with `limit + 1`, to know whether more follow) and the
    cursor of the page after them (None when this is the last page)."""
    shown = items[:limit]
    return shown, encode(kind, key(shown[-1])) if len(items) > limit else None
