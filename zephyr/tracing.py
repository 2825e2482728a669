"""Span export with the OpenTelemetry SDK, when the operator asks for it (docs/observability.md).

`setup(service)` at a service's start turns export on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`: spans go
through a batch processor to the OTLP/HTTP exporter, both configured by the standard `OTEL_*`
variables (service name, headers, sampler, batch delay). Without the variable nothing of
OpenTelemetry is imported and `ENABLED` stays False: callers test it before building anything, so
the hot path pays one attribute read. With the variable but without the SDK (the `otel` extra not
installed) one warning says so at start and nothing is exported.

Spans are started with an explicit parent, the W3C context a task keeps (`zephyr.tracecontext`),
never from the ambient context: a claim serves many tasks' traces at once. The exporter runs in
the SDK's own thread; its failures are logged by the SDK and never reach task processing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from zephyr.tracecontext import TraceParent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
Attributes = Mapping[str, str | int | float | bool]


class _State:
    """The process's tracer once export is on."""

    enabled = False
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


STATE = _State()


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for span export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def setup(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn span export on if the environment asks for it and the SDK is there; whether it is on.
    `service` (`zephyr-<service>`) names the process unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES does."""
    if not wanted(environ):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
            "(pip install 'zephyr[otel]'): no spans are exported (%s)",
            exc,
        )
        return False
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"zephyr-{service}"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    STATE.provider = provider
    STATE.tracer = provider.get_tracer("zephyr")
    STATE.enabled = True
    log.info("exporting spans over OTLP/HTTP as %s", resource.attributes.get(SERVICE_NAME))
    return True


@contextmanager
def never_raises(what: str) -> Iterator[None]:
    """Spans are best effort: a failure of the SDK inside is logged, never raised into the task
    processing around it."""
    try:
        yield
    except Exception:
        log.exception("%s failed; going on without them", what)


def shutdown() -> None:
    """Export what is queued and stop (at the service's end)."""
    if STATE.provider is not None:
        STATE.provider.shutdown()
    STATE.enabled, STATE.tracer, STATE.provider = False, None, None


def start(name: str, parent: TraceParent | None, attributes: Attributes, start_ns: int | None = None) -> Span:
    """A span `name` whose parent is the remote span `parent` (None: a new trace). Only while
    `STATE.enabled`."""
    from opentelemetry import trace

    assert STATE.tracer is not None, "tracing.start without tracing.setup"
    context = None
    if parent is not None:
        remote = trace.SpanContext(
            trace_id=int(parent.trace_id, 16),
            span_id=int(parent.parent_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parent.flags, 16)),
        )
        context = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    return STATE.tracer.start_span(
        name, context=context, kind=trace.SpanKind.INTERNAL, attributes=attributes, start_time=start_ns
    )


def context_of(span: Span) -> TraceParent:
    """The W3C context a callee of `span` gets."""
    context = span.get_span_context()
    return TraceParent(
        f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{int(context.trace_flags):02x}"
    )


def fail(span: Span, description: str) -> None:
    """Mark `span` as failed."""
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))


def end(span: Span, attributes: Attributes, end_ns: int | None = None) -> None:
    """Set `attributes` on `span` and end it."""
    span.set_attributes(attributes)
    span.end(end_time=end_ns)
