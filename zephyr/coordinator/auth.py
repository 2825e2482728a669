"""Cluster-token check on every Admin call and worker stream (`authorization: Bearer <token>`).

Health checks and reflection stay open so that probes and `grpcurl list` work without the secret;
they reveal nothing but service names and serving status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from zephyr.rpc import token_matches

OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
MESSAGE = "a valid cluster token is required (metadata authorization: Bearer <ZEPHYR_CLUSTER_TOKEN>)"


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
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
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
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
