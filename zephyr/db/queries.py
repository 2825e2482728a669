"""Named SQL queries loaded from `data/queries/*.sql`.

Each query in a file is headed by `-- name: NAME` and runs until the next such header. Lines
right under the header that start with `--` document the parameters (`$1` ...). Python code
refers to queries by name only: `QUERIES["claim_due"]`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path


def find_data_dir() -> Path:
    """Where the SQL lives: ZEPHYR_DATA_DIR if set, else the copy inside an installed package
    (`zephyr/data/`, put there by the build), else `data/` of the source checkout."""
    override = os.environ.get("ZEPHYR_DATA_DIR")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parents[1] / "data"
    if (packaged / "migrations").is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "data"


DATA_DIR = find_data_dir()
QUERIES_DIR = DATA_DIR / "queries"
MIGRATIONS_DIR = DATA_DIR / "migrations"

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str, *, source: str = "<string>") -> dict[str, str]:
    """Split one `.sql` file into {name: sql}. Raises ValueError on a duplicate or empty query."""
    found: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.end() : end].strip()
        sql = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        name = header.group("name")
        if not sql:
            raise ValueError(f"{source}: query {name!r} is empty")
        if name in found:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        found[name] = sql.rstrip(";")
    return found


class Queries(Mapping[str, str]):
    """All named queries of `data/queries/`, loaded once."""

    def __init__(self, directory: Path = QUERIES_DIR) -> None:
        self._directory = directory
        self._queries: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._queries is None:
            merged: dict[str, str] = {}
            for path in sorted(self._directory.glob("*.sql")):
                for name, sql in parse_queries(path.read_text(), source=path.name).items():
                    if name in merged:
                        raise ValueError(f"{path.name}: query {name!r} is also defined in another file")
                    merged[name] = sql
            self._queries = merged
        return self._queries

    def __getitem__(self, name: str) -> str:
        try:
            return self._load()[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self._directory}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


QUERIES = Queries()


@cache
def migration_files() -> tuple[Path, ...]:
    """Migration files in the order they apply (by their numeric prefix)."""
    return tuple(sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")))
