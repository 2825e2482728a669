"""The sync client: the async client driven on a private event loop.

Not for use inside a running event loop (use AsyncClient there). One Client is not thread-safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from zephyr.client.aio import DEFAULT_TIMEOUT_S, AsyncClient


class Client:
    """Same methods and arguments as AsyncClient, blocking."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tls_ca: str | None = None,
    ):
        self._runner = asyncio.Runner()
        self._async = AsyncClient(url, token, timeout_s=timeout_s, tls_ca=tls_ca)
        self.url = self._async.url

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._async.close())
        self._runner.close()

    def submit(
        self, task: dict[str, Any], *, idempotency_key: str | None = None, traceparent: str | None = None
    ) -> dict[str, Any]:
        return self._runner.run(
            self._async.submit(task, idempotency_key=idempotency_key, traceparent=traceparent)
        )

    def submit_batch(
        self,
        tasks: list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> list[str]:
        return self._runner.run(
            self._async.submit_batch(tasks, idempotency_key=idempotency_key, traceparent=traceparent)
        )

    def list_tasks(self, **filters: Any) -> dict[str, Any]:
        return self._runner.run(self._async.list_tasks(**filters))

    def iter_tasks(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._iterate(self._async.iter_tasks(**filters))

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.get_task(task_id))

    def patch_task(self, task_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._runner.run(self._async.patch_task(task_id, changes))

    def cancel(self, task_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.cancel(task_id))

    def retry(self, task_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.retry(task_id))

    def pause(self, task_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.pause(task_id))

    def resume(self, task_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.resume(task_id))

    def list_runs(self, task_id: str, **page: Any) -> dict[str, Any]:
        return self._runner.run(self._async.list_runs(task_id, **page))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.get_run(run_id))

    def logs(self, run_id: str, **page: Any) -> dict[str, Any]:
        return self._runner.run(self._async.logs(run_id, **page))

    def follow_logs(self, run_id: str, *, cursor: str | None = None) -> Iterator[dict[str, Any]]:
        return self._iterate(self._async.follow_logs(run_id, cursor=cursor))

    def workers(self) -> list[dict[str, Any]]:
        return self._runner.run(self._async.workers())

    def stats(self) -> dict[str, Any]:
        return self._runner.run(self._async.stats())

    def ready(self) -> bool:
        return self._runner.run(self._async.ready())

    def _iterate(self, agen: Any) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    item: dict[str, Any] = self._runner.run(_next(agen))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._runner.run(agen.aclose())


async def _next(agen: Any) -> Any:
    return await agen.__anext__()
