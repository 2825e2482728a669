"""The W3C traceparent parser: what it keeps, and every way a header is invalid (then ignored)."""

from __future__ import annotations

import pytest

from zephyr.tracecontext import MAX_HEADER_CHARS, TraceParent, new_span_id, parse, parse_stored

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_header_gives_its_fields() -> None:
    parsed = parse(VALID)
    assert parsed == TraceParent(TRACE, SPAN, "01")
    assert parsed is not None and parsed.sampled
    assert parsed.header() == VALID
    assert parse_stored(VALID) == parsed


def test_unsampled_and_surrounding_blanks() -> None:
    parsed = parse(f" \t00-{TRACE}-{SPAN}-00 ")
    assert parsed == TraceParent(TRACE, SPAN, "00")
    assert not parsed.sampled


def test_a_later_version_keeps_its_first_four_fields_and_is_kept_as_version_00() -> None:
    parsed = parse(f"cc-{TRACE}-{SPAN}-01-what-the-future-adds")
    assert parsed is not None
    assert parsed.header() == VALID
    assert parse(f"cc-{TRACE}-{SPAN}-01") == parsed


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00",
        f"00-{TRACE}-{SPAN}-01-",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-01-extra",
        f"cc-{TRACE}-{SPAN}-01x",  # a later version's extra fields follow a dash
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # lowercase hex only
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE}-{SPAN}-0G",
        f"0-{TRACE}-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN[:-1]}-01",
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01" + "\x00",
        f"cc-{TRACE}-{SPAN}-01-" + "x" * MAX_HEADER_CHARS,  # unbounded: refused unread
    ],
)
def test_invalid_headers_are_none(value: str | None) -> None:
    assert parse(value) is None


def test_a_child_keeps_trace_and_flags_with_a_new_span() -> None:
    parent = TraceParent(TRACE, SPAN, "01")
    child = parent.child()
    assert (child.trace_id, child.flags) == (TRACE, "01")
    assert child.parent_id != SPAN and len(child.parent_id) == 16
    assert parse(child.header()) == child
    assert parent.child("1111111111111111").parent_id == "1111111111111111"


def test_span_ids_are_random_nonzero_hex() -> None:
    ids = {new_span_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and int(i, 16) != 0 for i in ids)


def test_nothing_stored_is_none() -> None:
    assert parse_stored(None) is None
    assert parse_stored("") is None
