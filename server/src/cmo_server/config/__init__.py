"""Server configuration: frozen values built once from the environment, one group per concern.

`ServerConfig.from_env` reads the `CMO_*` variables and the standard names where they fit
(`POSTGRES_*`, `REDIS_*`, `S3_*`, `OTEL_*`, `LOG_LEVEL`), each group its own: `config.store`
(the database), `config.blob` (large payloads and artifacts), `config.limits` (the engine's),
`config.telemetry` (logs, metrics, traces), `config.retention`, `config.messaging` (A2A),
`config.auth` (who may call), `config.tls` (TLS and client certificates on the gRPC port) and
`config.policy` (the Rego policies), `config.rates` (per-namespace rate limits) and `config.ui`
(the web UI).
A bad value raises `ConfigError`, whose `variable` names it. Secrets (the database and Redis
passwords, the S3 secret key, the OTLP header values) never show in `repr(config)` nor in
`config.redacted()`, the form that is printed and logged. `unknown_settings` points out a
misspelt `CMO_*` variable, which would otherwise go unnoticed.
"""

from cmo_server.config._auth import AuthConfig
from cmo_server.config._blob import BLOB_BACKENDS, BlobConfig, S3Settings
from cmo_server.config._limits import EngineLimits
from cmo_server.config._messaging import MessagingConfig
from cmo_server.config._policy import PolicyConfig
from cmo_server.config._rates import RateLimitConfig
from cmo_server.config._readers import ConfigError
from cmo_server.config._retention import TERMINAL_STATUSES, RetentionConfig
from cmo_server.config._server import ServerConfig
from cmo_server.config._store import POSTGRES_VARIABLES, SSL_MODES, StoreConfig
from cmo_server.config._telemetry import (
    LOG_FORMATS,
    LOG_LEVEL_VARIABLES,
    LOG_LEVELS,
    METRICS_PORT,
    TRACES_EXPORTERS,
    TelemetryConfig,
    metrics_listen_beside,
    parse_otlp_headers,
)
from cmo_server.config._tls import TLSConfig, TLSMaterial
from cmo_server.config._ui import UI_PORT, UIConfig
from cmo_server.config._unknown import unknown_settings

__all__ = [
    "BLOB_BACKENDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LOG_LEVEL_VARIABLES",
    "METRICS_PORT",
    "POSTGRES_VARIABLES",
    "SSL_MODES",
    "TERMINAL_STATUSES",
    "TRACES_EXPORTERS",
    "UI_PORT",
    "BlobConfig",
    "ConfigError",
    "EngineLimits",
    "AuthConfig",
    "MessagingConfig",
    "PolicyConfig",
    "RateLimitConfig",
    "RetentionConfig",
    "S3Settings",
    "ServerConfig",
    "StoreConfig",
    "TLSConfig",
    "TLSMaterial",
    "TelemetryConfig",
    "UIConfig",
    "metrics_listen_beside",
    "parse_otlp_headers",
    "unknown_settings",
]
