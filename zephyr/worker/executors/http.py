"""`http` runs: one request through one pooled aiohttp session.

The payload is `zephyr.tasktypes.http.HttpPayload` (what the API validated), parsed again once
secrets are resolved; redirects are followed (unless `follow_redirects` is false) at most
MAX_REDIRECTS times.
The result keeps `status`, response `headers` and `body` (text, capped at 64 KiB, `truncated`
says so). An unexpected status fails the run (code `http_status`) with that result; a network
error fails it with code `http_error`. Both are retryable.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from zephyr.tasktypes.http import HttpPayload
from zephyr.worker.executors.base import RunContext, RunFailure, invalid, parse_resolved, text, text_map

BODY_CAP_BYTES = 64 * 1024
MAX_REDIRECTS = 10


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


class HttpExecutor:
    """Executes `http` payloads; one session (connection pool) per worker."""

    type = "http"

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64),
                auto_decompress=True,
                raise_for_status=False,
            )
        return self._session

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        request = parse_resolved(HttpPayload, payload)
        try:
            parsed = URL(text(request.url))
        except ValueError as exc:
            raise invalid("url", f"is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise invalid("url", "must be an absolute http:// or https:// URL")
        method = request.method.upper()
        headers = text_map(request.headers)
        expected = request.expected_statuses()
        body = request.body
        kwargs: dict[str, Any] = {}
        if isinstance(body, str):
            kwargs["data"] = body.encode()
        elif body is not None:
            kwargs["data"] = json.dumps(body, separators=(",", ":")).encode()
            if not any(key.lower() == "content-type" for key in headers):
                headers = {**headers, "Content-Type": "application/json"}
        request_timeout = request.timeout_s
        follow = request.follow_redirects if request.follow_redirects is not None else True
        # The run's timeout_s is enforced by the runner (a cancel); this is the request's own.
        timeout = aiohttp.ClientTimeout(total=request_timeout)
        try:
            async with self._get_session().request(
                method,
                parsed,
                headers=headers,
                timeout=timeout,
                allow_redirects=follow,
                max_redirects=MAX_REDIRECTS,
                **kwargs,
            ) as resp:
                raw = await resp.content.read(BODY_CAP_BYTES + 1)
                result = {
                    "status": resp.status,
                    "headers": {key: value for key, value in resp.headers.items()},
                    "body": _decode(raw[:BODY_CAP_BYTES], resp.charset),
                    "truncated": len(raw) > BODY_CAP_BYTES,
                }
        except aiohttp.TooManyRedirects:
            raise RunFailure(
                f"more than {MAX_REDIRECTS} redirects", code="too_many_redirects", retryable=False
            ) from None
        except TimeoutError:
            raise RunFailure(f"no response within {request_timeout:g}s", code="http_timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RunFailure(f"{type(exc).__name__}: {exc}", code="http_error") from None
        ok = resp.status in expected if expected is not None else 200 <= resp.status < 300
        if not ok:
            raise RunFailure(f"unexpected HTTP status {resp.status}", code="http_status", result=result)
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
