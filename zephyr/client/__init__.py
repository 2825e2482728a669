"""Python client of Zephyr's HTTP API, async (`AsyncClient`) and sync (`Client`).

    async with AsyncClient() as api:               # ZEPHYR_URL, ZEPHYR_TOKEN by default
        task = await api.submit({"type": "internal", "payload": {"function": "zephyr.noop"}})
        task = await api.get_task(task["id"])

    with Client("http://127.0.0.1:8080") as api:
        for line in api.follow_logs(run_id): print(line["line"])

Every method returns the JSON of SPEC's representations (dicts), and raises `ApiError` (status,
code, message, field) for an error answer.
"""

from __future__ import annotations

from zephyr.client.aio import DEFAULT_URL, ApiError, AsyncClient
from zephyr.client.sync import Client

__all__ = ["DEFAULT_URL", "ApiError", "AsyncClient", "Client"]
