"""`http` runs: one request through one pooled aiohttp session.

The payload is `zephyr.tasktypes.http.HttpPayload` (what the API validated), parsed again once
secrets are resolved; redirects are followed (unless `follow_redirects` is false) at most
MAX_REDIRECTS times, one hop at a time so that the worker's destination policy
(`zephyr.worker.destinations`, ZEPHYR_HTTP_ALLOW_PRIVATE) checks every hop; credentials
(Authorization, Cookie) are not carried to another origin. A refused destination fails the run
with code `destination_refused`, not retryable.
The result keeps `status`, response `headers` and `body` (text, capped at 64 KiB, `truncated`
says so). An unexpected status fails the run (code `http_status`) with that result; a network
error fails it with code `http_error`. Both are retryable.
The request carries the run's W3C `traceparent` (docs/observability.md, Traces) unless the
payload's headers name one.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from zephyr.tasktypes.http import HttpPayload
from zephyr.worker.destinations import DestinationPolicy, GuardedResolver, refusal_in
from zephyr.worker.executors.base import RunContext, RunFailure, invalid, parse_resolved, text, text_map

BODY_CAP_BYTES = 64 * 1024
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Request headers that carry credentials for the origin they were meant for.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
TRACEPARENT = "traceparent"


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _failure(exc: BaseException, request_timeout: float | None) -> RunFailure:
    """The run failure a request's exception means."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        return RunFailure(f"more than {MAX_REDIRECTS} redirects", code="too_many_redirects", retryable=False)
    if isinstance(exc, TimeoutError):
        return RunFailure(f"no response within {request_timeout:g}s", code="http_timeout")
    refused = refusal_in(exc)
    if refused is not None:
        return RunFailure(str(refused), code="destination_refused", retryable=False)
    return RunFailure(f"{type(exc).__name__}: {exc}", code="http_error")


def with_traceparent(headers: dict[str, str], traceparent: str) -> dict[str, str]:
    """`headers` with the run's W3C `traceparent` (its trace, the run as the parent span), unless
    the payload sets one itself: an explicit header is the task author's choice and wins."""
    if not traceparent or any(key.lower() == TRACEPARENT for key in headers):
        return headers
    return {**headers, TRACEPARENT: traceparent}


class HttpExecutor:
    """Executes `http` payloads; one session (connection pool) per worker."""

    type = "http"

    def __init__(self, policy: DestinationPolicy | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._policy = policy or DestinationPolicy()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = None if self._policy.allow_private else GuardedResolver(self._policy)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, resolver=resolver),
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
        headers = with_traceparent(text_map(request.headers), ctx.traceparent)
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
            async with await self._send(method, parsed, headers, kwargs.get("data"), timeout, follow) as resp:
                raw = await resp.content.read(BODY_CAP_BYTES + 1)
                result = {
                    "status": resp.status,
                    "headers": {key: value for key, value in resp.headers.items()},
                    "body": _decode(raw[:BODY_CAP_BYTES], resp.charset),
                    "truncated": len(raw) > BODY_CAP_BYTES,
                }
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _failure(exc, request_timeout) from None
        ok = resp.status in expected if expected is not None else 200 <= resp.status < 300
        if not ok:
            raise RunFailure(f"unexpected HTTP status {resp.status}", code="http_status", result=result)
        return result

    async def _send(
        self,
        method: str,
        url: URL,
        headers: dict[str, str],
        data: bytes | None,
        timeout: aiohttp.ClientTimeout,
        follow: bool,
    ) -> aiohttp.ClientResponse:
        """The final response of the request, redirects followed hop by hop (each one checked)."""
        session = self._get_session()
        for _hop in range(MAX_REDIRECTS + 1):
            self._policy.check_url(url)
            resp = await session.request(
                method, url, headers=headers, data=data, timeout=timeout, allow_redirects=False
            )
            location = resp.headers.get("Location")
            if not follow or resp.status not in REDIRECTS or not location:
                return resp
            resp.release()
            target = url.join(URL(location))
            if target.scheme not in ("http", "https"):
                raise RunFailure(f"redirect to {target.scheme}: refused", code="http_error", retryable=False)
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, data = ("HEAD" if method == "HEAD" else "GET"), None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if target.origin() != url.origin():
                headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
            url = target
        raise aiohttp.TooManyRedirects(resp.request_info, resp.history)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
