"""What a run may send up and the database will keep: size caps and values PostgreSQL accepts.

Shared by the worker (which checks before it sends) and the coordinator (which checks again: a
worker is not trusted to). PostgreSQL's jsonb refuses NaN and Infinity, `\\u0000` and lone UTF-16
surrogates; its text refuses NUL. A result it would refuse must fail its own run, never the batch
of endings it travels in.

Limits (docs/design.md, "Limits"):
- a result: MAX_RESULT_BYTES of JSON text, else the run fails with `result_too_large`;
- an error message: MAX_ERROR_CHARS, cut beyond;
- a log line: MAX_LOG_LINE_CHARS, cut beyond;
- a stream message: packed up to MESSAGE_BUDGET_BYTES, far below the gRPC limit (rpc.py).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_RESULT_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 4096
MAX_LOG_LINE_CHARS = 16 * 1024
MESSAGE_BUDGET_BYTES = 4 * 1024 * 1024

# Anything in JSON text that may decode to a value jsonb refuses: the non-finite constants, an
# exponent (1e400 decodes to inf), NUL and surrogate escapes. Most results match none of these, and
# a search is all they cost; a match only means "look closer".
_SUSPECT = re.compile(r"NaN|Infinity|[0-9][eE]|\\u(?:0000|[dD][89a-fA-F])")


class Unstorable(ValueError):
    """A run's output the database cannot keep; `code` is the run's error code."""

    def __init__(self, message: str, *, code: str = "invalid_result") -> None:
        super().__init__(message)
        self.code = code


def encode_result(value: Any) -> str:
    """`value` as JSON text the database will keep; raises Unstorable saying why not."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Unstorable(f"result is not storable JSON: {exc}") from None
    check_result_json(text)
    return text


def check_result_json(text: str) -> Any:
    """The decoded result of JSON `text` (text that is not JSON stays a string); raises Unstorable
    when it is larger than MAX_RESULT_BYTES or holds a value the database refuses."""
    if len(text) > MAX_RESULT_BYTES // 4 and len(text.encode()) > MAX_RESULT_BYTES:
        raise Unstorable(
            f"result is larger than {MAX_RESULT_BYTES // 1024} KiB of JSON", code="result_too_large"
        )
    try:
        value = json.loads(text)
    except ValueError:
        value = text
        if "\x00" in text:
            raise Unstorable("result holds a NUL character, which the database refuses") from None
        return value
    if _SUSPECT.search(text):
        _check_value(value)
    return value


def _check_value(value: Any) -> None:
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable(f"result holds {value}, which JSON in the database cannot hold")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_value(item)
    elif isinstance(value, list):
        for item in value:
            _check_value(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise Unstorable("result holds a NUL character, which the database refuses")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise Unstorable("result holds a lone UTF-16 surrogate, which the database refuses") from None


def clean_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, NUL replaced and lone surrogates replaced: storable text."""
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode()
    return text
