"""Tracing on the server: a TracerProvider from the config, gRPC server spans, run trace contexts.

A run's trace context is the W3C `traceparent`/`tracestate` of the StartRun (or ForkRun) call,
stored with the run and carried by each of its tasks, so the steps that workers run (each a
`cmo.step` span, see the SDK) are children of that call wherever and whenever they run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cmo_server.config import TelemetryConfig, parse_otlp_headers

__all__ = ["call_trace_context", "server_interceptors", "tracer_provider"]

W3C = TraceContextTextMapPropagator()
"""Runs store W3C Trace Context whatever propagators the process has configured."""
W3C_HEADERS = ("traceparent", "tracestate")


def tracer_provider(config: TelemetryConfig) -> TracerProvider | None:
    """The provider `config` asks for (OTLP or console exporter), or None when traces are off.

    The caller owns it: `shutdown()` flushes and stops the exporter.
    """
    exporter = _exporter(config)
    if exporter is None:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: config.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(config: TelemetryConfig) -> SpanExporter | None:
    kind = config.traces_exporter
    if kind == "console":
        return ConsoleSpanExporter(service_name=config.service_name)
    if kind == "otlp":
        # Imported only when used: the exporter pulls in its protobuf and gRPC stack.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        options: dict[str, Any] = {"headers": parse_otlp_headers(config.otlp_headers) or None}
        if config.otlp_endpoint:
            options["endpoint"] = config.otlp_endpoint
        return OTLPSpanExporter(**options)
    return None


def server_interceptors(provider: TracerProvider | None) -> list[Any]:
    """The gRPC server span interceptor for `provider`; none when tracing is off.

    PollTask is left out: a long-poll is mostly waiting, a root span every poll would drown the
    traces that matter, and `cmo_poll_wait_seconds` measures it. Health checks are left out too,
    and worker sessions, which last as long as their worker: each call on one is a span of its own
    (`call_span`).
    """
    if provider is None:
        return []
    skip = filters.any_of(filters.method_name("PollTask"), filters.method_name("Session"), filters.health_check())
    interceptor = aio_server_interceptor(tracer_provider=provider, filter_=filters.negate(skip))  # type: ignore[no-untyped-call]
    return [interceptor]


def call_trace_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The W3C trace context a run started by this call carries: `traceparent` (and `tracestate`).

    The current span when there is one (the call's server span, under the caller's span);
    otherwise the caller's own headers, so traces still join up through a server that does not
    record spans. Empty when neither has a valid context.
    """
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        W3C.inject(carrier)
        return carrier
    incoming = {k.lower(): v for k, v in metadata or () if k.lower() in W3C_HEADERS and isinstance(v, str)}
    if incoming:
        W3C.inject(carrier, context=W3C.extract(incoming))  # only a well-formed context passes
    return carrier


@contextlib.contextmanager
def call_span(tracer: Tracer | None, method: str, trace_context: Mapping[str, str]) -> Iterator[Span | None]:
    """A server span for a call on a worker session, as the interceptor makes for a unary call."""
    if tracer is None:
        yield None
        return
    attributes = {"rpc.system": "grpc", "rpc.service": "cmo.api.v1.WorkerService", "rpc.method": method}
    with tracer.start_as_current_span(
        f"/cmo.api.v1.WorkerService/{method}",
        context=W3C.extract(dict(trace_context)),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        yield span
