"""Tracing in the SDK, on the OpenTelemetry API only: the application owns the TracerProvider.

The library never installs a provider. With none configured every span here is a no-op; with
one (the global provider, or one given to `Client.connect`), a worker's steps are `cmo.step`
spans under the run's trace context (the StartRun call's span, carried by every task) and its
activities `cmo.activity` spans under their step. When the optional gRPC instrumentation is
installed (`cmo-sdk[otel]`), calls are client spans too, and they carry the trace context to the
server in their metadata.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["W3C", "client_interceptors", "provider_configured", "step_span", "trace_metadata", "tracer"]

W3C = TraceContextTextMapPropagator()
"""Tasks carry W3C Trace Context, whatever propagators the application configured."""
UNTRACED_METHODS = ("PollTask", "Session")
"""Long-polls are mostly waiting: a root span for each would drown the traces that matter. A worker
session lasts as long as its worker: its calls are spans of their own (see `cmo._session`)."""


def provider_configured(provider: TracerProvider | None) -> bool:
    """Whether spans would be recorded: a provider given, or a global one the application set."""
    return provider is not None or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracer(provider: TracerProvider | None) -> Tracer:
    """The SDK's tracer from `provider`, else from the global provider (a no-op until one is set)."""
    return trace.get_tracer("cmo", tracer_provider=provider)


def client_interceptors(provider: TracerProvider | None) -> list[Any]:
    """Client span interceptors for gRPC, when the instrumentation is installed and spans are recorded."""
    if not provider_configured(provider):
        return []
    try:
        from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters
    except ImportError:
        return []
    skip = filters.negate(filters.any_of(*(filters.method_name(m) for m in UNTRACED_METHODS)))
    interceptors = aio_client_interceptors(tracer_provider=provider, filter_=skip)  # type: ignore[no-untyped-call]
    return list(interceptors)


def trace_metadata() -> list[tuple[str, str]]:
    """The current span's W3C headers as call metadata (for channels without the instrumentation)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    W3C.inject(carrier)
    return sorted(carrier.items())


@contextlib.contextmanager
def step_span(tracer: Tracer, task: Any, *, worker_id: str) -> Iterator[Span]:
    """The current span while a worker runs `task` (a `cmo.api.v1.Task`), child of the run's context."""
    parent = W3C.extract(_str_map(task.trace_context))
    attributes = {
        "cmo.run_id": task.run_id,
        "cmo.step_index": task.step_index,
        "cmo.attempt": task.attempt,
        "cmo.node_id": task.node_id,
        "cmo.graph_id": task.graph_id,
        "cmo.graph_version": task.graph_version,
        "cmo.task_queue": task.task_queue,
        "cmo.worker_id": worker_id,
    }
    with tracer.start_as_current_span(
        "cmo.step", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def _str_map(carrier: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in carrier.items()}
