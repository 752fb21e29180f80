"""Observability settings: read from the environment, validated by name, secrets kept out of logs."""

from __future__ import annotations

import pytest

from cmo_server.config import ConfigError, TelemetryConfig, parse_otlp_headers


def test_tracing_is_off_by_default_and_follows_the_otlp_endpoint():
    config = TelemetryConfig.from_env({})
    assert (config.metrics_listen, config.service_name, config.traces_exporter) == ("", "cmo-server", "none")
    with_endpoint = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert with_endpoint.traces_exporter == "otlp"
    console = TelemetryConfig.from_env({"OTEL_TRACES_EXPORTER": "Console", "OTEL_SERVICE_NAME": "orchestrator"})
    assert (console.traces_exporter, console.service_name) == ("console", "orchestrator")
    off = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"})
    assert off.traces_exporter == "none"


def test_metrics_listen_is_read_and_checked():
    assert TelemetryConfig.from_env({"CMO_METRICS_LISTEN": "0.0.0.0:9464"}).metrics_listen == "0.0.0.0:9464"
    assert TelemetryConfig.from_env({"CMO_METRICS_LISTEN": ""}).metrics_listen == ""
    with pytest.raises(ConfigError, match="CMO_METRICS_LISTEN"):
        TelemetryConfig.from_env({"CMO_METRICS_LISTEN": "9464"})


def test_bad_observability_settings_name_their_variable():
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        TelemetryConfig.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_HEADERS") as caught:
        TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cret,broken"})
    assert "s3cret" not in str(caught.value)


def test_otlp_headers_are_parsed_and_their_values_redacted():
    raw = "Authorization=Bearer%20s3cret, x-tenant = acme"
    assert parse_otlp_headers(raw) == {"authorization": "Bearer s3cret", "x-tenant": "acme"}
    config = TelemetryConfig.from_env(
        {"OTEL_EXPORTER_OTLP_HEADERS": raw, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:pw@collector:4317"}
    )
    shown = config.redacted()
    assert shown["otlp_headers"] == {"authorization": "***", "x-tenant": "***"}
    assert shown["otlp_endpoint"] == "https://user:***@collector:4317"
    assert "s3cret" not in repr(shown)
    assert "pw" not in repr(shown)


def test_the_tracer_provider_follows_the_config():
    from opentelemetry.sdk.resources import SERVICE_NAME

    from cmo_server.telemetry import tracer_provider

    assert tracer_provider(TelemetryConfig()) is None
    provider = tracer_provider(
        TelemetryConfig(otlp_endpoint="http://127.0.0.1:4317", otlp_headers="x-token=t", service_name="orch")
    )
    assert provider is not None
    try:
        assert provider.resource.attributes[SERVICE_NAME] == "orch"
    finally:
        provider.shutdown()
