"""The benchmark's HTTP client of the Zephyr API: the product's public contract, nothing internal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp

JSON = dict[str, Any]


def noop_task(**extra: Any) -> JSON:
    return {"type": "internal", "payload": {"function": "zephyr.noop"}, **extra}


def sleep_task(seconds: float, **extra: Any) -> JSON:
    return {
        "type": "internal",
        "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": seconds}},
        **extra,
    }


class ApiError(RuntimeError):
    """The API answered with an unexpected status; the message carries its body."""


class Api:
    """POSTs tasks to one scheduler. Use as `async with Api(url) as api:`."""

    def __init__(self, base_url: str, *, connections: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Api as an async context manager"
        return self._session

    async def submit(self, task: JSON) -> str:
        """POST /v1/tasks; the new task's id."""
        async with self.session.post(f"{self.base_url}/v1/tasks", json=task) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                raise ApiError(f"POST /v1/tasks -> {resp.status}: {body}")
        return str(body["id"])

    async def submit_batch(self, tasks: Sequence[JSON]) -> list[str]:
        """POST /v1/tasks/batch (at most 1000); the ids in order."""
        async with self.session.post(f"{self.base_url}/v1/tasks/batch", json={"tasks": list(tasks)}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                raise ApiError(f"POST /v1/tasks/batch -> {resp.status}: {body}")
        return [str(task_id) for task_id in body["ids"]]

    async def submit_many(self, tasks: Sequence[JSON], *, batch: int, parallel: int) -> list[str]:
        """All of `tasks` in batches of `batch`, `parallel` requests in flight; ids in order."""
        chunks = [tasks[i : i + batch] for i in range(0, len(tasks), batch)]
        gate = asyncio.Semaphore(parallel)

        async def one(chunk: Sequence[JSON]) -> list[str]:
            async with gate:
                return await self.submit_batch(chunk)

        results = await asyncio.gather(*(one(chunk) for chunk in chunks))
        return [task_id for ids in results for task_id in ids]
