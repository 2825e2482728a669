"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header a task keeps.

`parse(value)` reads a header value strictly as the recommendation says: `version-traceid-parentid-
flags` in lowercase hex, version `ff` invalid, trace id and parent id not all zeros, version `00`
exactly 55 characters, a later version at least 55 with a `-` after the flags (its extra fields are
ignored). Anything else is invalid and gives None: the recommendation has a receiver ignore an
invalid `traceparent` and start a new trace, so the API never refuses a request for it (it adds a
warning to its answer instead). What is kept is always the version `00` form, 55 characters.

No OpenTelemetry import here: the trace context is kept and forwarded whether or not spans are
exported (`zephyr.tracing`).
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

HEADER = "traceparent"
# Longer values are refused unread: a later version may add fields, but not kilobytes of them.
MAX_HEADER_CHARS = 512
_VERSION_00_CHARS = 55
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    """One parsed `traceparent`: the trace, the caller's span in it, and the trace flags."""

    trace_id: str  # 32 lowercase hex digits
    parent_id: str  # 16 lowercase hex digits
    flags: str  # 2 lowercase hex digits; bit 0 is `sampled`

    def header(self) -> str:
        """The version `00` header value."""
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def child(self, span_id: str | None = None) -> TraceParent:
        """The context a callee gets from a span `span_id` (a new random one by default) of
        this trace."""
        return TraceParent(self.trace_id, span_id or new_span_id(), self.flags)


def parse(value: str | None) -> TraceParent | None:
    """The trace context of header value `value`; None when it is absent or invalid."""
    if value is None or len(value) > MAX_HEADER_CHARS:
        return None
    value = value.strip(" \t")
    found = _FIELDS.match(value)
    if found is None:
        return None
    version, trace_id, parent_id, flags = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if version == "00" and len(value) != _VERSION_00_CHARS:
        return None
    if len(value) > _VERSION_00_CHARS and value[_VERSION_00_CHARS] != "-":
        return None
    return TraceParent(trace_id, parent_id, flags)


def parse_stored(value: str | None) -> TraceParent | None:
    """A traceparent as the database keeps it (always valid version `00`), or None."""
    if not value:
        return None
    return TraceParent(value[3:35], value[36:52], value[53:55])


def new_span_id() -> str:
    """A random span id (16 lowercase hex digits, never all zeros). Not secret: the module's
    generator, as the OpenTelemetry SDK's ids, without a system call per run."""
    return f"{random.getrandbits(64) or 1:016x}"
