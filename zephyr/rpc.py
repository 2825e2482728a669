"""gRPC plumbing shared by coordinator and worker: channel options, auth metadata, backoff."""

from __future__ import annotations

import hmac
import random

from zephyr.v1 import worker_pb2

# Keepalive pings find a dead peer behind a silent network within ~30 s even when no heartbeat flows.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

AUTH_HEADER = "authorization"

# A Completion's outcome as the run status it ends with (task_runs.status).
RUN_STATUS_OF_OUTCOME: dict[int, str] = {
    worker_pb2.RUN_OUTCOME_SUCCEEDED: "succeeded",
    worker_pb2.RUN_OUTCOME_FAILED: "failed",
    worker_pb2.RUN_OUTCOME_TIMED_OUT: "timed_out",
    worker_pb2.RUN_OUTCOME_CANCELLED: "cancelled",
}


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`, or none."""
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def token_matches(expected: str | None, metadata: object) -> bool:
    """True when no token is required, or `metadata` carries `Bearer <expected>` (constant time)."""
    if not expected:
        return True
    presented = ""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == AUTH_HEADER:
            presented = value if isinstance(value, str) else value.decode()
    return hmac.compare_digest(presented.encode(), f"Bearer {expected}".encode())


def backoff_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter for the `attempt`-th retry (1-based)."""
    return random.uniform(0, min(cap_s, base_s * 2 ** max(0, attempt - 1)))
