from __future__ import annotations

import pytest

from zephyr.db.queries import QUERIES, parse_queries


def test_parse_splits_named_queries_and_drops_comments() -> None:
    text = "-- name: one\n-- $1 id\nSELECT $1;\n\n-- name: two\nSELECT 2\n"
    assert parse_queries(text) == {"one": "SELECT $1", "two": "SELECT 2"}


def test_parse_rejects_duplicates_and_empty_queries() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n-- nothing\n")


def test_every_project_query_loads() -> None:
    assert "lock_migrations" in QUERIES
    assert all(sql.strip() for sql in QUERIES.values())
