"""Server configuration: one frozen value built once from the environment, flags override.

`ServerConfig.from_env` reads the `CMO_*` variables and the standard names where they fit
(`POSTGRES_*`, `REDIS_*`, `S3_*`, `OTEL_*`, `LOG_LEVEL`); keyword arguments (the command line's
flags) win over them. A bad value raises `ConfigError`, whose message starts with the variable's
name. Secrets (the database and Redis passwords, the S3 secret key, the OTLP header values) never
show in `repr(config)` nor in `config.redacted()`, the form that is printed and logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from cmo import RunStatus
from cmo_server._settings import (
    LOG_LEVELS,
    SSL_MODES,
    TERMINAL_STATUSES,
    ConfigError,
    _bool,
    _check_database_url,
    _check_redis_url,
    _duration,
    _int,
    _is_endpoint,
    _log_level,
    _postgres_url,
    _redact_headers,
    _redact_url,
    _redis_url,
    _seconds,
    _statuses,
    parse_otlp_headers,
)

__all__ = [
    "BLOB_BACKENDS",
    "DEFAULT_METRICS_LISTEN",
    "LOG_LEVELS",
    "POSTGRES_VARIABLES",
    "SETTING_VARIABLES",
    "SSL_MODES",
    "TERMINAL_STATUSES",
    "ConfigError",
    "EngineLimits",
    "S3Settings",
    "ServerConfig",
    "parse_otlp_headers",
]

DEFAULT_METRICS_LISTEN = "0.0.0.0:9464"
"""Where `cmo-server start` serves /metrics, /healthz and /readyz unless CMO_METRICS_LISTEN says otherwise."""
TRACES_EXPORTERS = ("otlp", "console", "none")


BLOB_BACKENDS = ("filesystem", "s3")
"""Values of `CMO_BLOB_BACKEND`."""

# S3 bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, alphanumeric at both ends.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


POSTGRES_VARIABLES = (
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "POSTGRES_SSLMODE",
)
"""The standard Postgres variables, read when CMO_DATABASE_URL is not set and POSTGRES_HOST is."""

SETTING_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "listen": ("CMO_LISTEN",),
    "database_url": ("CMO_DATABASE_URL", *POSTGRES_VARIABLES),
    "sqlite_path": ("CMO_SQLITE_PATH",),
    "pool_size": ("CMO_POOL_SIZE",),
    "health_check_interval": ("CMO_HEALTH_CHECK_SECONDS",),
    "shutdown_grace": ("CMO_SHUTDOWN_GRACE_SECONDS",),
    "log_level": ("CMO_LOG_LEVEL", "LOG_LEVEL"),
    "log_format": ("CMO_LOG_FORMAT",),
    "blob_backend": ("CMO_BLOB_BACKEND",),
    "s3": (
        "S3_ENDPOINT",
        "S3_BUCKET",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_REGION",
        "S3_SECURE",
        "S3_PREFIX",
        "CMO_S3_CA_FILE",
        "CMO_S3_CREATE_BUCKET",
    ),
    "blob_dir": ("CMO_BLOB_DIR",),
    "inline_threshold_bytes": ("CMO_INLINE_THRESHOLD_BYTES",),
    "max_artifact_bytes": ("CMO_MAX_ARTIFACT_BYTES",),
    "limits": (
        "CMO_TASK_LEASE_SECONDS",
        "CMO_MAX_PAYLOAD_BYTES",
        "CMO_SWEEP_INTERVAL_SECONDS",
        "CMO_FALLBACK_SWEEP_SECONDS",
    ),
    "metrics_listen": ("CMO_METRICS_LISTEN",),
    "otel_service_name": ("OTEL_SERVICE_NAME",),
    "otlp_endpoint": ("OTEL_EXPORTER_OTLP_ENDPOINT",),
    "otlp_headers": ("OTEL_EXPORTER_OTLP_HEADERS",),
    "otel_traces_exporter": ("OTEL_TRACES_EXPORTER",),
    "retention": ("CMO_RETENTION",),
    "retention_statuses": ("CMO_RETENTION_STATUSES",),
    "prune_interval": ("CMO_PRUNE_INTERVAL",),
    "blob_gc_grace": ("CMO_BLOB_GC_GRACE",),
    "redis_url": ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"),
}
"""The environment variables each `ServerConfig` field is read from, the main one first.

A keyword override of a field (a flag) hides all of them, so a flag wins even over a malformed value.
"""


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Timings and size limits the engine enforces."""

    task_lease: timedelta = timedelta(seconds=30)
    """How long a worker holds a task without a heartbeat before it goes to another worker."""
    max_poll_wait: timedelta = timedelta(seconds=60)
    """Longest long-poll a worker may ask for."""
    default_poll_wait: timedelta = timedelta(seconds=20)
    """Long-poll length when the worker asks for none."""
    max_payload_bytes: int = 4 * 1024 * 1024
    """Largest state, input or output accepted."""
    sweep_interval: timedelta = timedelta(seconds=1)
    """How often parked pollers look for tasks that became ready by time (retries, lease expiry),
    and due waits are looked for, when the store pushes nothing (SQLite, or a broken connection)."""
    fallback_sweep_interval: timedelta = timedelta(seconds=30)
    """With Postgres notifications: the longest time between those looks, in case one was missed."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the S3 blob store (`CMO_BLOB_BACKEND=s3`) keeps its objects, and how it signs in."""

    endpoint: str = ""
    """`host:port`, or a URL `http://host:port` / `https://host[:port]` whose scheme sets TLS (S3_ENDPOINT)."""
    bucket: str = ""
    """Bucket holding the blobs (S3_BUCKET)."""
    access_key: str = ""
    """Access key id (S3_ACCESS_KEY)."""
    secret_key: str = field(default="", repr=False)
    """Secret key (S3_SECRET_KEY); never logged nor shown by `ServerConfig.redacted`."""
    region: str = ""
    """Region to sign for (S3_REGION); empty: the client asks the server for the bucket's region."""
    secure: bool | None = None
    """Whether to use TLS (S3_SECURE); None: from the endpoint's scheme, and TLS when it has none."""
    prefix: str = ""
    """Prepended verbatim to every object key, e.g. `cmo/` (S3_PREFIX)."""
    ca_file: str = ""
    """PEM file of the CA certificates to trust for TLS (CMO_S3_CA_FILE); empty: the public CAs."""
    create_bucket: bool = True
    """Create the bucket at start when it is missing (CMO_S3_CREATE_BUCKET)."""

    @property
    def host(self) -> str:
        """The endpoint without its scheme: `host:port` (or `host`) as the client wants it."""
        return self.endpoint.partition("://")[2] if "://" in self.endpoint else self.endpoint

    @property
    def tls(self) -> bool:
        """Whether connections use TLS: `secure` if set, else the endpoint's scheme, else True."""
        if self.secure is not None:
            return self.secure
        return not self.endpoint.startswith("http://")

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad S3 setting."""
        for name, value in (
            ("S3_ENDPOINT", self.endpoint),
            ("S3_BUCKET", self.bucket),
            ("S3_ACCESS_KEY", self.access_key),
            ("S3_SECRET_KEY", self.secret_key),
        ):
            if not value:
                raise ConfigError(f"{name} is required when CMO_BLOB_BACKEND=s3")
        scheme = self.endpoint.partition("://")[0] if "://" in self.endpoint else ""
        if scheme not in ("", "http", "https"):
            raise ConfigError(f"S3_ENDPOINT must be host:port or an http(s):// URL, got {self.endpoint!r}")
        host, _, port = self.host.partition(":")
        if not host or "/" in self.host.rstrip("/") or (port and not port.rstrip("/").isdigit()):
            raise ConfigError(
                f"S3_ENDPOINT must be host:port or an http(s):// URL without a path, got {self.endpoint!r}"
            )
        if scheme and self.secure is not None and self.secure != (scheme == "https"):
            raise ConfigError(
                f"S3_SECURE={str(self.secure).lower()} contradicts the scheme of S3_ENDPOINT {self.endpoint!r}"
            )
        if not _BUCKET_NAME.fullmatch(self.bucket) or ".." in self.bucket:
            raise ConfigError(
                "S3_BUCKET must be 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a"
                f" letter or digit, got {self.bucket!r}"
            )
        if self.prefix.startswith("/"):
            raise ConfigError(f"S3_PREFIX must not start with '/', got {self.prefix!r}")
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise ConfigError(f"CMO_S3_CA_FILE must name a readable PEM file, got {self.ca_file!r}")


@dataclass(frozen=True, slots=True, repr=False)
class ServerConfig:
    """Everything `cmo-server` needs to start. Its `repr` masks the secrets, as `redacted` does."""

    listen: str = "127.0.0.1:7233"
    """host:port the gRPC server binds."""
    database_url: str = ""
    """Postgres URL (`cmo-server start`), from CMO_DATABASE_URL or else the POSTGRES_* variables;
    empty for the SQLite file of `start-dev`. May carry the password: shown only redacted."""
    sqlite_path: str = ".cmo/dev.db"
    """SQLite file of `start-dev`."""
    pool_size: int = 8
    """Postgres connections."""
    health_check_interval: timedelta = timedelta(seconds=10)
    """How often the database and the blob store are checked for the gRPC health status and /readyz."""
    shutdown_grace: timedelta = timedelta(seconds=10)
    """How long in-flight RPCs may finish after a shutdown signal."""
    log_level: str = "INFO"
    log_format: str = "text"
    """text or json."""
    blob_backend: str = "filesystem"
    """Where blobs go (CMO_BLOB_BACKEND): `filesystem` (in `blob_root`) or `s3` (see `s3`)."""
    s3: S3Settings = field(default_factory=S3Settings)
    """The S3 blob store's settings, used when `blob_backend` is `s3`."""
    blob_dir: str = ""
    """Directory of the filesystem blob store (large payloads, artifacts); empty: see `blob_root`."""
    inline_threshold_bytes: int = 256 * 1024
    """Payloads larger than this go to the blob store; smaller ones stay inline."""
    max_artifact_bytes: int = 64 * 1024 * 1024
    """Largest artifact a worker may put (the server holds one in memory while it stores it)."""
    limits: EngineLimits = field(default_factory=EngineLimits)
    metrics_listen: str = ""
    """host:port of the HTTP endpoint serving /metrics, /healthz and /readyz; empty: no endpoint."""
    otel_service_name: str = "cmo-server"
    """service.name of the server's spans (OTEL_SERVICE_NAME)."""
    otlp_endpoint: str = ""
    """OTLP/gRPC collector address for spans (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    otlp_headers: str = ""
    """Headers sent to the collector, `k=v,k2=v2` (OTEL_EXPORTER_OTLP_HEADERS); may carry tokens."""
    otel_traces_exporter: str = ""
    """otlp, console or none (OTEL_TRACES_EXPORTER); empty: otlp when an endpoint is set, else none."""
    retention: timedelta | None = None
    """Ended runs older than this are pruned on a schedule (CMO_RETENTION, e.g. 30d); None: kept."""
    retention_statuses: tuple[RunStatus, ...] = TERMINAL_STATUSES
    """Which ended runs the schedule prunes (CMO_RETENTION_STATUSES, e.g. completed,terminated)."""
    prune_interval: timedelta = timedelta(hours=1)
    """How often the pruning schedule runs (CMO_PRUNE_INTERVAL, e.g. 1h)."""
    blob_gc_grace: timedelta = timedelta(hours=1)
    """Blobs younger than this are never collected: a payload's blob is written before its row."""
    redis_url: str = ""
    """Redis for agents' messaging (A2A), from REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD;
    read and checked here, not used by the server itself. May carry the password: shown only redacted."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Read `CMO_*` variables (and `POSTGRES_*`, `REDIS_*`, `S3_*`, `OTEL_*`, LOG_LEVEL).

        Keyword arguments (the CLI's flags) win: a field given one (not None) is not read from the
        environment at all, see `SETTING_VARIABLES`.

        Raises:
            ConfigError: a variable (or an override, under its variable's name) is malformed; the
                message starts with the variable's name and never shows a secret.
        """
        env = os.environ if env is None else env
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if hidden := {name for key in overrides for name in SETTING_VARIABLES.get(key, ())}:
            env = {k: v for k, v in env.items() if k not in hidden}
        base, base_limits = cls(), EngineLimits()
        limits = EngineLimits(
            task_lease=_seconds(env, "CMO_TASK_LEASE_SECONDS", base_limits.task_lease),
            max_payload_bytes=_int(env, "CMO_MAX_PAYLOAD_BYTES", base_limits.max_payload_bytes),
            sweep_interval=_seconds(env, "CMO_SWEEP_INTERVAL_SECONDS", base_limits.sweep_interval),
            fallback_sweep_interval=_seconds(env, "CMO_FALLBACK_SWEEP_SECONDS", base_limits.fallback_sweep_interval),
        )
        config = cls(
            listen=env.get("CMO_LISTEN", base.listen),
            database_url=env.get("CMO_DATABASE_URL", "").strip() or _postgres_url(env),
            sqlite_path=env.get("CMO_SQLITE_PATH") or base.sqlite_path,
            pool_size=_int(env, "CMO_POOL_SIZE", base.pool_size),
            shutdown_grace=_seconds(env, "CMO_SHUTDOWN_GRACE_SECONDS", base.shutdown_grace),
            health_check_interval=_seconds(env, "CMO_HEALTH_CHECK_SECONDS", base.health_check_interval),
            log_level=_log_level(env, base.log_level),
            log_format=env.get("CMO_LOG_FORMAT", base.log_format),
            blob_backend=env.get("CMO_BLOB_BACKEND") or base.blob_backend,
            s3=_s3_settings(env),
            blob_dir=env.get("CMO_BLOB_DIR") or base.blob_dir,
            inline_threshold_bytes=_int(env, "CMO_INLINE_THRESHOLD_BYTES", base.inline_threshold_bytes),
            max_artifact_bytes=_int(env, "CMO_MAX_ARTIFACT_BYTES", base.max_artifact_bytes),
            limits=limits,
            metrics_listen=env.get("CMO_METRICS_LISTEN", base.metrics_listen).strip(),
            otel_service_name=env.get("OTEL_SERVICE_NAME") or base.otel_service_name,
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", base.otlp_endpoint).strip(),
            otlp_headers=env.get("OTEL_EXPORTER_OTLP_HEADERS", base.otlp_headers),
            otel_traces_exporter=env.get("OTEL_TRACES_EXPORTER", base.otel_traces_exporter).strip().lower(),
            retention=_duration(env, "CMO_RETENTION", None),
            retention_statuses=_statuses(env, "CMO_RETENTION_STATUSES", base.retention_statuses),
            prune_interval=_duration(env, "CMO_PRUNE_INTERVAL", base.prune_interval) or base.prune_interval,
            blob_gc_grace=_duration(env, "CMO_BLOB_GC_GRACE", base.blob_gc_grace) or base.blob_gc_grace,
            redis_url=env.get("REDIS_URL", "").strip() or _redis_url(env),
        )
        config = replace(config, **overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"CMO_LISTEN must be host:port, got {self.listen!r}")
        if self.database_url:
            _check_database_url(self.database_url)
        elif not self.sqlite_path.strip() or os.path.isdir(self.sqlite_path):
            raise ConfigError(f"CMO_SQLITE_PATH must name a file, got {self.sqlite_path!r}")
        if self.pool_size < 1:
            raise ConfigError(f"CMO_POOL_SIZE must be at least 1, got {self.pool_size}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"CMO_LOG_FORMAT must be text or json, got {self.log_format!r}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"CMO_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.limits.task_lease <= timedelta(0):
            raise ConfigError("CMO_TASK_LEASE_SECONDS must be positive")
        if self.limits.sweep_interval <= timedelta(0):
            raise ConfigError("CMO_SWEEP_INTERVAL_SECONDS must be positive")
        if self.limits.fallback_sweep_interval < self.limits.sweep_interval:
            raise ConfigError("CMO_FALLBACK_SWEEP_SECONDS must be at least CMO_SWEEP_INTERVAL_SECONDS")
        if self.health_check_interval <= timedelta(0):
            raise ConfigError("CMO_HEALTH_CHECK_SECONDS must be positive")
        if self.retention is not None and self.retention <= timedelta(0):
            raise ConfigError("CMO_RETENTION must be a positive duration such as 30d, or empty to keep runs")
        if self.prune_interval <= timedelta(0):
            raise ConfigError("CMO_PRUNE_INTERVAL must be a positive duration such as 1h")
        if self.limits.max_payload_bytes < 1024:
            raise ConfigError("CMO_MAX_PAYLOAD_BYTES must be at least 1024")
        if self.blob_backend not in BLOB_BACKENDS:
            raise ConfigError(f"CMO_BLOB_BACKEND must be one of {', '.join(BLOB_BACKENDS)}, got {self.blob_backend!r}")
        if self.blob_backend == "s3":
            self.s3.validate()
        if self.blob_dir and not self.blob_dir.strip():
            raise ConfigError(f"CMO_BLOB_DIR must be a directory path, got {self.blob_dir!r}")
        if self.inline_threshold_bytes < 0:
            raise ConfigError(f"CMO_INLINE_THRESHOLD_BYTES must be 0 or more, got {self.inline_threshold_bytes}")
        if self.max_artifact_bytes < 1:
            raise ConfigError(f"CMO_MAX_ARTIFACT_BYTES must be at least 1, got {self.max_artifact_bytes}")
        if self.metrics_listen:
            host, _, port = self.metrics_listen.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"CMO_METRICS_LISTEN must be host:port or empty, got {self.metrics_listen!r}")
        if self.otlp_endpoint and not _is_endpoint(self.otlp_endpoint):
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_ENDPOINT must be host:port or an http(s):// URL,"
                f" got {_redact_url(self.otlp_endpoint)!r}"
            )
        if self.otel_traces_exporter not in ("", *TRACES_EXPORTERS):
            raise ConfigError(f"OTEL_TRACES_EXPORTER must be otlp, console or none, got {self.otel_traces_exporter!r}")
        try:
            parse_otlp_headers(self.otlp_headers)
        except ValueError as err:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas: {err}"
            ) from None
        if self.redis_url:
            _check_redis_url(self.redis_url)

    def __repr__(self) -> str:
        masked = {
            "database_url": _redact_url(self.database_url),
            "otlp_endpoint": _redact_url(self.otlp_endpoint),
            "otlp_headers": _redact_headers(self.otlp_headers),
            "redis_url": _redact_url(self.redis_url),
        }
        shown = (f"{f.name}={masked.get(f.name, getattr(self, f.name))!r}" for f in fields(self))
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def traces_exporter(self) -> str:
        """Where spans go: otlp, console or none (the OTLP exporter when only an endpoint is set)."""
        return self.otel_traces_exporter or ("otlp" if self.otlp_endpoint else "none")

    @property
    def blob_root(self) -> str:
        """The blob store's directory: `blob_dir`, else `blobs` beside the SQLite file, else `.cmo/blobs`.

        So `start-dev --db data/dev.db` keeps its blobs in `data/blobs`, with the data they belong to.
        """
        if self.blob_dir:
            return self.blob_dir
        if not self.database_url:
            return os.path.join(os.path.dirname(self.sqlite_path), "blobs")
        return os.path.join(".cmo", "blobs")

    def redacted(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, secrets masked, for logs and `cmo-server config`.

        The database and Redis passwords and the S3 secret key become `***`; of the OTLP headers,
        which often carry tokens, only the names are shown.
        """
        shown: dict[str, Any] = {
            "listen": self.listen,
            "database_url": _redact_url(self.database_url),
            "sqlite_path": self.sqlite_path if not self.database_url else "",
            "pool_size": self.pool_size,
            "log_level": self.log_level,
            "log_format": self.log_format,
            "shutdown_grace_s": self.shutdown_grace.total_seconds(),
            "health_check_s": self.health_check_interval.total_seconds(),
            "task_lease_s": self.limits.task_lease.total_seconds(),
            "sweep_interval_s": self.limits.sweep_interval.total_seconds(),
            "fallback_sweep_s": self.limits.fallback_sweep_interval.total_seconds(),
            "max_payload_bytes": self.limits.max_payload_bytes,
            "blob_backend": self.blob_backend,
            "inline_threshold_bytes": self.inline_threshold_bytes,
            "max_artifact_bytes": self.max_artifact_bytes,
            "metrics_listen": self.metrics_listen,
            "otel_service_name": self.otel_service_name,
            "traces_exporter": self.traces_exporter,
            "otlp_endpoint": _redact_url(self.otlp_endpoint),
            # Header values are often bearer tokens or API keys: only the names are shown.
            "otlp_headers": dict.fromkeys(parse_otlp_headers(self.otlp_headers), "***"),
            "retention": None if self.retention is None else str(self.retention),
            "retention_statuses": [s.name.lower() for s in self.retention_statuses],
            "prune_interval": str(self.prune_interval),
            "blob_gc_grace": str(self.blob_gc_grace),
            "redis_url": _redact_url(self.redis_url),
        }
        if self.blob_backend == "s3":
            shown["s3"] = {
                "endpoint": self.s3.endpoint,
                "tls": self.s3.tls,
                "bucket": self.s3.bucket,
                "prefix": self.s3.prefix,
                "region": self.s3.region,
                "access_key": self.s3.access_key,
                "secret_key": "***" if self.s3.secret_key else "",
                "ca_file": self.s3.ca_file,
                "create_bucket": self.s3.create_bucket,
            }
        else:
            shown["blob_dir"] = self.blob_root
        return shown


def _s3_settings(env: Mapping[str, str]) -> S3Settings:
    return S3Settings(
        endpoint=env.get("S3_ENDPOINT", ""),
        bucket=env.get("S3_BUCKET", ""),
        access_key=env.get("S3_ACCESS_KEY", ""),
        secret_key=env.get("S3_SECRET_KEY", ""),
        region=env.get("S3_REGION", ""),
        secure=_bool(env, "S3_SECURE", None),
        prefix=env.get("S3_PREFIX", ""),
        ca_file=env.get("CMO_S3_CA_FILE", ""),
        create_bucket=_bool(env, "CMO_S3_CREATE_BUCKET", True) is not False,
    )
