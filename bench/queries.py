"""The benchmark's own named SQL (`bench/sql/*.sql`), loaded like the product's queries."""

from __future__ import annotations

from pathlib import Path

from zephyr.db.queries import Queries

BENCH_QUERIES = Queries(Path(__file__).resolve().parent / "sql")
