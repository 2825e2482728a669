"""The async client of the HTTP API (aiohttp)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp

from zephyr.tls import client_ssl_context

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    """An error answer of the API (`status` 0: the API could not be reached)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _submit_headers(idempotency_key: str | None, traceparent: str | None) -> dict[str, str] | None:
    headers = {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if traceparent:
        headers["traceparent"] = traceparent
    return headers or None


def _query(**params: Any) -> dict[str, str]:
    return {key: str(value) for key, value in params.items() if value is not None}


class AsyncClient:
    """One HTTP session to the API at `url` (default ZEPHYR_URL, else http://127.0.0.1:8080)
    with bearer `token` (default ZEPHYR_TOKEN); an https API's certificate must chain to the CA
    file `tls_ca` (default ZEPHYR_TLS_CA, else the system's CAs). Use as `async with`, or call
    `close()`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tls_ca: str | None = None,
    ):
        self.url = (url or os.environ.get("ZEPHYR_URL") or DEFAULT_URL).rstrip("/")
        self._tls_ca = tls_ca or os.environ.get("ZEPHYR_TLS_CA") or None
        token = token if token is not None else os.environ.get("ZEPHYR_TOKEN")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=client_ssl_context(self._tls_ca))
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, connector=connector
            )
        return self._session

    async def request(self, method: str, path: str, *, json_body: Any = None, **kwargs: Any) -> Any:
        """One call; the decoded JSON answer, or ApiError."""
        try:
            async with self._http().request(method, self.url + path, json=json_body, **kwargs) as resp:
                text = await resp.text()
                body = json.loads(text) if text else None
                if resp.status >= 400:
                    raise _error(resp.status, body, text)
                return body
        except aiohttp.ClientConnectionError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.url}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ApiError(0, "bad_response", f"the answer is not JSON: {exc}") from exc

    # tasks

    async def submit(
        self, task: dict[str, Any], *, idempotency_key: str | None = None, traceparent: str | None = None
    ) -> dict[str, Any]:
        """Create a task (a repeated idempotency key returns the first task); `traceparent`: the
        W3C trace context its runs join (an invalid one is ignored, with a warning)."""
        headers = _submit_headers(idempotency_key, traceparent)
        result: dict[str, Any] = await self.request("POST", "/v1/tasks", json_body=task, headers=headers)
        return result

    async def submit_batch(
        self,
        tasks: list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> list[str]:
        """Create up to 1000 tasks at once, all or none; their ids in order. With
        `idempotency_key`, repeating the same batch answers the same ids; `traceparent` is the
        trace context of every task of the batch."""
        headers = _submit_headers(idempotency_key, traceparent)
        result = await self.request("POST", "/v1/tasks/batch", json_body={"tasks": tasks}, headers=headers)
        ids: list[str] = result["ids"]
        return ids

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: `{"tasks": [...], "next_cursor": ...}`."""
        params = _query(status=status, type=type, name=name, limit=limit, cursor=cursor)
        result: dict[str, Any] = await self.request("GET", "/v1/tasks", params=params)
        return result

    async def iter_tasks(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every task matching `filters` (as list_tasks), page after page."""
        cursor = None
        while True:
            page = await self.list_tasks(**filters, cursor=cursor)
            for task in page["tasks"]:
                yield task
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def get_task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/tasks/{task_id}")
        return result

    async def patch_task(self, task_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", f"/v1/tasks/{task_id}", json_body=changes)
        return result

    async def _action(self, task_id: str, action: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/v1/tasks/{task_id}/{action}")
        return result

    async def cancel(self, task_id: str) -> dict[str, Any]:
        return await self._action(task_id, "cancel")

    async def retry(self, task_id: str) -> dict[str, Any]:
        return await self._action(task_id, "retry")

    async def pause(self, task_id: str) -> dict[str, Any]:
        return await self._action(task_id, "pause")

    async def resume(self, task_id: str) -> dict[str, Any]:
        return await self._action(task_id, "resume")

    # runs and logs

    async def list_runs(
        self, task_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/tasks/{task_id}/runs", params=_query(limit=limit, cursor=cursor)
        )
        return result

    async def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/runs/{run_id}")
        return result

    async def logs(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of log lines: `{"logs": [...], "next_cursor": ...}`."""
        result: dict[str, Any] = await self.request(
            "GET", f"/v1/runs/{run_id}/logs", params=_query(limit=limit, cursor=cursor)
        )
        return result

    async def follow_logs(self, run_id: str, *, cursor: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The run's lines so far, then new ones as they come; ends when the run has ended."""
        params = _query(follow=1, cursor=cursor)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self._http().get(
                f"{self.url}/v1/runs/{run_id}/logs", params=params, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    text = await resp.text()
                    raise _error(resp.status, json.loads(text) if text else None, text)
                event, data = "message", ""
                async for raw in resp.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line:
                        if event == "log" and data:
                            yield json.loads(data)
                        elif event == "end":
                            return
                        event, data = "message", ""
        except aiohttp.ClientConnectionError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.url}: {exc}") from exc

    # cluster

    async def workers(self) -> list[dict[str, Any]]:
        result = await self.request("GET", "/v1/workers")
        workers: list[dict[str, Any]] = result["workers"]
        return workers

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/stats")
        return result

    async def ready(self) -> bool:
        """True when the API answers /readyz with 200."""
        try:
            await self.request("GET", "/readyz")
        except ApiError:
            return False
        return True


def _error(status: int, body: Any, text: str) -> ApiError:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return ApiError(status, str(error.get("code")), str(error.get("message")), error.get("field"))
    return ApiError(status, "http_error", text[:200])
