"""What the benchmarks run on their own (`python -m bench.submit`, `python -m bench.listing`) share:
a fresh migrated database on the tests' server, and their results file."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support import database

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@asynccontextmanager
async def fresh_database(database_url: str | None) -> AsyncIterator[tuple[str, bool]]:
    """(DSN of a freshly migrated database, whether the server is an embedded one); the server is
    `database_url`'s, else the tests' (the local one on 127.0.0.1:5432, else an embedded one). The
    database is dropped afterwards and an embedded server stopped."""
    if database_url:
        os.environ["ZEPHYR_TEST_DATABASE_URL"] = database_url
    admin_dsn, embedded = await asyncio.to_thread(database.find_server)
    template = await database.ensure_template(admin_dsn)
    name = await database.create_test_database(admin_dsn, template)
    try:
        yield database.with_database(admin_dsn, name), embedded is not None
    finally:
        await database.drop_test_database(admin_dsn, name)
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]


def write_results(kind: str, results: dict[str, Any]) -> Path:
    """`results` as bench/results/<kind>-<time>.json and <kind>-latest.json; the first path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=2) + "\n"
    path = RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{kind}-latest.json").write_text(text)
    return path
