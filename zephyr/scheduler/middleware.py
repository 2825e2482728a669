"""Middlewares: bearer auth, the error shape for every failure, and request metrics.

Every error leaves as `{"error": {"code", "message", "field"?}}` with its status, including
aiohttp's own 404/405 and unexpected exceptions (500, logged, details not sent).
"""

from __future__ import annotations

import hmac
import logging
import time

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from zephyr import metrics
from zephyr.errors import Unauthenticated, Unavailable, ZephyrError
from zephyr.scheduler.dashboard import is_dashboard_path
from zephyr.scheduler.http import CONFIG, respond

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})

# Failures that mean "the database cannot be reached right now" (503, retry) rather than a bug (500).
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ObjectNotInPrerequisiteStateError,  # "database is not currently accepting connections"
)


def token_ok(header: str | None, tokens: tuple[str, ...]) -> bool:
    """True when `header` is `Bearer <one of tokens>`; constant time in the token compared, and
    every configured token is compared, so timing does not tell which one nearly matched."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer ") :].strip().encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def error_response(exc: ZephyrError) -> web.Response:
    response = respond(exc.to_dict(), status=exc.http_status)
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="zephyr"'
    return response


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time and count each request; turn every failure into the error shape."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ZephyrError as exc:
        status = exc.http_status
        return error_response(exc)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        response = respond({"error": {"code": code, "message": exc.reason}}, status=exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the resource takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except DATABASE_DOWN as exc:
        status = 503
        log.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
        return error_response(Unavailable("the database is unavailable; try again"))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return respond({"error": {"code": "internal", "message": "internal error"}}, status=500)
    finally:
        route = _route(request)
        metrics.child(metrics.HTTP_REQUESTS, request.method, route, str(status)).inc()
        metrics.child(metrics.HTTP_LATENCY, route).observe(time.perf_counter() - started)


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ZEPHYR_API_TOKENS set, every path but /healthz, /readyz and the dashboard's static
    assets (which hold no data) needs a bearer token."""
    tokens = request.app[CONFIG].api_tokens
    if (
        tokens
        and request.path not in OPEN_PATHS
        and not is_dashboard_path(request.path)
        and not token_ok(request.headers.get("Authorization"), tokens)
    ):
        raise Unauthenticated("send `Authorization: Bearer <token>` with one of ZEPHYR_API_TOKENS")
    return await handler(request)
