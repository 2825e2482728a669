"""Every error Zephyr raises on purpose, and the one place that maps them to HTTP and gRPC.

Each class's docstring is its default message. `code` is the machine-readable code of the HTTP
error shape `{"error": {"code", "message", "field"}}`.
"""

from __future__ import annotations

import grpc


class ZephyrError(Exception):
    """Zephyr failed."""

    code = "internal"
    http_status = 500
    grpc_status = grpc.StatusCode.INTERNAL

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.field = field
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        """The HTTP error body."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class ConfigError(ZephyrError):
    """The configuration is invalid."""

    code = "invalid_config"


class StartupError(ZephyrError):
    """The service cannot start."""

    code = "startup_failed"


class ValidationError(ZephyrError):
    """The request is invalid."""

    code = "invalid_request"
    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidSchedule(ValidationError):
    """The schedule is invalid."""

    code = "invalid_schedule"


class PayloadTooLarge(ZephyrError):
    """The request body is too large."""

    code = "too_large"
    http_status = 413
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ZephyrError):
    """A valid bearer token is required."""

    code = "unauthenticated"
    http_status = 401
    grpc_status = grpc.StatusCode.UNAUTHENTICATED


class NotFound(ZephyrError):
    """No such object."""

    code = "not_found"
    http_status = 404
    grpc_status = grpc.StatusCode.NOT_FOUND


class Conflict(ZephyrError):
    """The object's state does not allow this."""

    code = "conflict"
    http_status = 409
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class UnschedulableSchedule(Conflict):
    """The schedule is well-formed but holds no firing the scheduler can keep."""

    code = "unschedulable"


class Unavailable(ZephyrError):
    """A dependency is unavailable; try again."""

    code = "unavailable"
    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class TaskFailed(Exception):
    """Raised by task code to fail a run with a code; `retryable=False` dead-letters at once."""

    def __init__(self, message: str, *, code: str = "failed", retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
