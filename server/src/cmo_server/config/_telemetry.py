"""What the server tells about itself: logs, the metrics and probe endpoint, and traces."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _check_address, _masked_repr, _redact_url

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOG_LEVEL_VARIABLES",
    "METRICS_PORT",
    "TRACES_EXPORTERS",
    "TelemetryConfig",
    "metrics_listen_beside",
    "parse_otlp_headers",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Values of CMO_LOG_LEVEL / LOG_LEVEL, in any case; WARN is read as WARNING."""
LOG_LEVEL_VARIABLES = ("CMO_LOG_LEVEL", "LOG_LEVEL")
"""Where the log level is read from: the first one set wins."""
LOG_FORMATS = ("text", "json")
"""Values of CMO_LOG_FORMAT."""
TRACES_EXPORTERS = ("otlp", "console", "none")
"""Values of OTEL_TRACES_EXPORTER."""
METRICS_PORT = 9464
"""The port `cmo-server start` serves /metrics, /healthz and /readyz on unless CMO_METRICS_LISTEN says otherwise."""


def metrics_listen_beside(listen: str) -> str:
    """The metrics endpoint `cmo-server start` serves by default: the gRPC address's host, port 9464.

    So a server that keeps its API on the loopback interface does not offer its metrics and probes
    to the whole network, and one listening on every interface serves them there too.
    """
    return f"{listen.rpartition(':')[0]}:{METRICS_PORT}"


def parse_otlp_headers(raw: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS as a dict: `key=value` pairs, comma-separated, values URL-encoded.

    Raises:
        ValueError: a pair has no `=` or an empty key; the message names the key, not the value.
    """
    headers: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{key.strip()!r} has no value" if key.strip() else "a pair has no key")
        headers[key.strip().lower()] = urllib.parse.unquote(value.strip())
    return headers


@dataclass(frozen=True, slots=True, repr=False)
class TelemetryConfig:
    """Logs, the metrics and probe endpoint, and where the server's spans go."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        *LOG_LEVEL_VARIABLES,
        "CMO_LOG_FORMAT",
        "CMO_METRICS_LISTEN",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_TRACES_EXPORTER",
    )
    """Every variable this group reads."""

    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (CMO_LOG_LEVEL, else LOG_LEVEL)."""
    log_format: str = "text"
    """text or json (CMO_LOG_FORMAT)."""
    metrics_listen: str = ""
    """host:port of the HTTP endpoint serving /metrics, /healthz and /readyz (CMO_METRICS_LISTEN);
    empty: no endpoint."""
    service_name: str = "cmo-server"
    """service.name of the server's spans (OTEL_SERVICE_NAME)."""
    otlp_endpoint: str = ""
    """OTLP/gRPC collector address for spans (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    otlp_headers: str = ""
    """Headers sent to the collector, `k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS); may carry tokens."""
    exporter: str = ""
    """otlp, console or none (OTEL_TRACES_EXPORTER); empty: see `traces_exporter`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelemetryConfig:
        """Read and check the log settings, CMO_METRICS_LISTEN and the OTEL_* variables.

        Raises:
            ConfigError: one of them is malformed; the message never shows a header's value.
        """
        base = cls()
        config = cls(
            log_level=_log_level(env, base.log_level),
            log_format=env.get("CMO_LOG_FORMAT", base.log_format),
            metrics_listen=env.get("CMO_METRICS_LISTEN", base.metrics_listen).strip(),
            service_name=env.get("OTEL_SERVICE_NAME") or base.service_name,
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", base.otlp_endpoint).strip(),
            otlp_headers=env.get("OTEL_EXPORTER_OTLP_HEADERS", base.otlp_headers),
            exporter=env.get("OTEL_TRACES_EXPORTER", base.exporter).strip().lower(),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("CMO_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("CMO_LOG_FORMAT", f"must be text or json, got {self.log_format!r}")
        if self.metrics_listen:
            _check_address("CMO_METRICS_LISTEN", self.metrics_listen, or_empty=True)
        if self.otlp_endpoint and not _is_endpoint(self.otlp_endpoint):
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                f"must be host:port or an http(s):// URL, got {_redact_url(self.otlp_endpoint)!r}",
            )
        if self.exporter not in ("", *TRACES_EXPORTERS):
            raise ConfigError("OTEL_TRACES_EXPORTER", f"must be otlp, console or none, got {self.exporter!r}")
        try:
            parse_otlp_headers(self.otlp_headers)
        except ValueError as err:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_HEADERS", f"must be key=value pairs separated by commas: {err}"
            ) from None

    @property
    def traces_exporter(self) -> str:
        """Where spans go: otlp, console or none (the OTLP exporter when only an endpoint is set)."""
        return self.exporter or ("otlp" if self.otlp_endpoint else "none")

    def __repr__(self) -> str:
        return _masked_repr(
            self, otlp_endpoint=_redact_url(self.otlp_endpoint), otlp_headers=_redact_headers(self.otlp_headers)
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON; of the OTLP headers, which often carry tokens, only the names."""
        return {
            "log_level": self.log_level,
            "log_format": self.log_format,
            "metrics_listen": self.metrics_listen,
            "service_name": self.service_name,
            "traces_exporter": self.traces_exporter,
            "otlp_endpoint": _redact_url(self.otlp_endpoint),
            "otlp_headers": dict.fromkeys(parse_otlp_headers(self.otlp_headers), "***"),
        }


def _redact_headers(raw: str) -> str:
    """OTEL_EXPORTER_OTLP_HEADERS with every value masked; never raises, for `repr`."""
    return ",".join(f"{pair.partition('=')[0].strip()}=***" for pair in raw.split(",") if pair.strip())


def _is_endpoint(endpoint: str) -> bool:
    """`host:port` or an http(s) URL, as the OTLP exporter takes them."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    if scheme not in ("", "http", "https") or any(c.isspace() for c in endpoint):
        return False
    host = rest.rpartition("@")[2].partition("/")[0]
    if scheme:
        return bool(host)
    name, _, port = host.rpartition(":")
    return bool(name) and port.isdigit()


def _log_level(env: Mapping[str, str], default: str) -> str:
    for name in LOG_LEVEL_VARIABLES:  # the first one set, so an error names the one read
        if raw := env.get(name, "").strip():
            level = "WARNING" if raw.upper() == "WARN" else raw.upper()
            if level not in LOG_LEVELS:
                raise ConfigError(name, f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
            return level
    return default
