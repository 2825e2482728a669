"""Cluster-token check on every Admin call and worker stream (`authorization: Bearer <token>`).

Health checks and reflection stay open so that probes and `grpcurl list` work without the secret;
they reveal nothing but service names and serving status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from zephyr.rpc import token_matches

OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
MESSAGE = "a valid cluster token is required (metadata authorization: Bearer <ZEPHYR_CLUSTER_TOKEN>)"
# How long a refused streaming call may take to send its first message before the refusal.
FIRST_MESSAGE_WAIT_S = 1.0


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls without the cluster token with UNAUTHENTICATED; no token configured: all pass."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or not self._token or details.method.startswith(OPEN_PREFIXES):
            return handler
        if token_matches(self._token, details.invocation_metadata):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if handler.request_streaming:
            # A client whose first write is still in flight when the status arrives sees INTERNAL
            # instead of this refusal (grpc/grpc#36066); taking its first message first avoids that.
            await _first_message(request)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)


async def _first_message(requests: AsyncIterator[Any]) -> None:
    """Wait, bounded, for a request stream's first message, or for its end or failure."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(anext(requests), FIRST_MESSAGE_WAIT_S)
