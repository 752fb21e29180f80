"""Observability of the server: traces (OpenTelemetry), metrics and probes (Prometheus)."""

from cmo_server.telemetry._http import MetricsEndpoint, serve_metrics
from cmo_server.telemetry._metrics import PrometheusMetrics, StoreGauges
from cmo_server.telemetry._tracing import call_span, call_trace_context, server_interceptors, tracer_provider

__all__ = [
    "call_span",
    "MetricsEndpoint",
    "PrometheusMetrics",
    "StoreGauges",
    "call_trace_context",
    "serve_metrics",
    "server_interceptors",
    "tracer_provider",
]
