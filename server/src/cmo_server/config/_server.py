"""`ServerConfig`: the server's own few settings and one group per concern, built once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, ClassVar

from cmo_server.config._auth import AuthConfig
from cmo_server.config._blob import BlobConfig
from cmo_server.config._limits import EngineLimits
from cmo_server.config._messaging import MessagingConfig
from cmo_server.config._policy import PolicyConfig
from cmo_server.config._rates import RateLimitConfig
from cmo_server.config._readers import ConfigError, _check_address, _seconds
from cmo_server.config._retention import RetentionConfig
from cmo_server.config._store import StoreConfig
from cmo_server.config._telemetry import TelemetryConfig, metrics_listen_beside
from cmo_server.config._tls import TLSConfig
from cmo_server.config._ui import UIConfig

__all__ = ["ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `cmo-server` needs to start: the gRPC front's settings, then a group per concern.

    Each group reads and checks its own variables (`StoreConfig.from_env` ...); its `repr` masks
    its secrets, so this one's does too.
    """

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_LISTEN", "CMO_HEALTH_CHECK_SECONDS", "CMO_SHUTDOWN_GRACE_SECONDS")
    """The variables of the fields of its own; each group lists its own in its `VARIABLES`."""

    listen: str = "127.0.0.1:7233"
    """host:port the gRPC server binds (CMO_LISTEN)."""
    health_check_interval: timedelta = timedelta(seconds=10)
    """How often the database and the blob store are checked for the gRPC health status and /readyz."""
    shutdown_grace: timedelta = timedelta(seconds=10)
    """How long in-flight RPCs may finish after a shutdown signal."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """Postgres or the SQLite file."""
    blob: BlobConfig = field(default_factory=BlobConfig)
    """Where large payloads and artifacts go."""
    limits: EngineLimits = field(default_factory=EngineLimits)
    """The engine's timings and size limits."""
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    """Logs, metrics and probes, traces."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    """The pruning schedule."""
    messaging: MessagingConfig = field(default_factory=MessagingConfig)
    """Agents' messaging (A2A)."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """Who may call."""
    tls: TLSConfig = field(default_factory=TLSConfig)
    """TLS on the gRPC port, and client certificates (mTLS)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The Rego policies gating steps and registrations."""
    rates: RateLimitConfig = field(default_factory=RateLimitConfig)
    """Per-namespace call rates and streams per connection."""
    ui: UIConfig = field(default_factory=UIConfig)
    """The web UI (off unless CMO_UI_LISTEN is set; `start-dev` turns it on, see `with_dev_ui`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, metrics_by_default: bool = False) -> ServerConfig:
        """Read `CMO_*` variables (and `POSTGRES_*`, `REDIS_*`, `S3_*`, `OTEL_*`, LOG_LEVEL), group by group.

        Args:
            env: The environment; `os.environ` when not given.
            metrics_by_default: Serve /metrics and the probes when CMO_METRICS_LISTEN is not set, on
                the host of the gRPC address, port 9464 (what `cmo-server start` does).

        Raises:
            ConfigError: a variable is malformed; `variable` names it and the message, which starts
                with that name, never shows a secret.
        """
        env = os.environ if env is None else env
        base = cls()
        listen = env.get("CMO_LISTEN", base.listen)
        _check_address("CMO_LISTEN", listen)
        telemetry = TelemetryConfig.from_env(env)
        if metrics_by_default and "CMO_METRICS_LISTEN" not in env:
            telemetry = replace(telemetry, metrics_listen=metrics_listen_beside(listen))
        config = cls(
            listen=listen,
            health_check_interval=_seconds(env, "CMO_HEALTH_CHECK_SECONDS", base.health_check_interval),
            shutdown_grace=_seconds(env, "CMO_SHUTDOWN_GRACE_SECONDS", base.shutdown_grace),
            store=StoreConfig.from_env(env),
            blob=BlobConfig.from_env(env),
            limits=EngineLimits.from_env(env),
            telemetry=telemetry,
            retention=RetentionConfig.from_env(env),
            messaging=MessagingConfig.from_env(env),
            auth=AuthConfig.from_env(env),
            tls=TLSConfig.from_env(env),
            policy=PolicyConfig.from_env(env),
            rates=RateLimitConfig.from_env(env),
            ui=UIConfig.from_env(env),
        )
        config.validate()
        return config

    def with_dev_ui(self, env: Mapping[str, str] | None = None) -> ServerConfig:
        """This config with the web UI on (`start-dev`): the gRPC host, port 8233, unless CMO_UI_LISTEN is set."""
        return replace(self, ui=self.ui.beside(self.listen, os.environ if env is None else env))

    @classmethod
    def variables(cls) -> frozenset[str]:
        """Every variable the server reads: those of its own fields and those of each group."""
        return frozenset(cls.VARIABLES).union(*(group.default_factory.VARIABLES for group in _GROUPS))

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting, of its own or of a group."""
        _check_address("CMO_LISTEN", self.listen)
        if self.health_check_interval <= timedelta(0):
            raise ConfigError("CMO_HEALTH_CHECK_SECONDS", "must be positive")
        for group in _GROUPS:
            getattr(self, group.name).validate()
        if self.auth.mode == "mtls" and not self.tls.mutual:
            # The subject is only known, and verified, when the handshake asks for a certificate.
            raise ConfigError(
                "CMO_TLS_CLIENT_CA_FILE", "must name the CA of the clients' certificates when CMO_AUTH=mtls"
            )

    @property
    def blob_root(self) -> str:
        """The blob store's directory: `blob.dir`, else `blobs` beside the SQLite file, else `.cmo/blobs`.

        So `start-dev --db data/dev.db` keeps its blobs in `data/blobs`, with the data they belong to.
        """
        if self.blob.dir:
            return self.blob.dir
        if not self.store.database_url:
            return os.path.join(os.path.dirname(self.store.sqlite_path), "blobs")
        return os.path.join(".cmo", "blobs")

    def redacted(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict by group, secrets masked, for logs and `cmo-server config`.

        The database and Redis passwords and the S3 secret key become `***`; of the OTLP headers,
        which often carry tokens, only the names are shown.
        """
        return {
            "listen": self.listen,
            "health_check_s": self.health_check_interval.total_seconds(),
            "shutdown_grace_s": self.shutdown_grace.total_seconds(),
            "store": self.store.redacted(),
            "blob": self.blob.redacted(self.blob_root),
            "limits": self.limits.redacted(),
            "telemetry": self.telemetry.redacted(),
            "retention": self.retention.redacted(),
            "messaging": self.messaging.redacted(),
            "auth": self.auth.redacted(),
            "tls": self.tls.redacted(),
            "policy": self.policy.redacted(),
            "rates": self.rates.redacted(),
            "ui": self.ui.redacted(),
        }


# The fields that are groups, each built by its class's from_env: what `variables` and `validate` go through.
_GROUPS: tuple[Any, ...] = tuple(f for f in fields(ServerConfig) if f.default_factory is not MISSING)
