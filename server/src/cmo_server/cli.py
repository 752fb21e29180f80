"""`cmo-server`: start the orchestrator (dev or production), migrate its database, show its config.

Settings come from the environment (`ServerConfig.from_env`); a flag stands for its variable and
wins over it (and over the variables it replaces). A bad variable stops the command with one line
naming it (exit 1); a bad flag, naming the flag (exit 2). A `CMO_*` variable that nothing reads is
reported, with the setting it most likely misspells.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cmo_server._logging import configure_logging
from cmo_server._version import __version__
from cmo_server.app import open_store, serve_forever
from cmo_server.blob import BlobStoreUnavailable
from cmo_server.config import (
    BLOB_BACKENDS,
    LOG_FORMATS,
    LOG_LEVEL_VARIABLES,
    LOG_LEVELS,
    POSTGRES_VARIABLES,
    ConfigError,
    ServerConfig,
    unknown_settings,
)

__all__ = ["main"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Each flag's parameter, and the options that define it.
_OPTIONS: dict[str, Callable[[F], F]] = {
    "listen": click.option("--listen", metavar="HOST:PORT", help="gRPC address [$CMO_LISTEN; 127.0.0.1:7233]."),
    "database_url": click.option(
        "--database-url",
        metavar="URL",
        help="Postgres URL [$CMO_DATABASE_URL, else built from $POSTGRES_HOST and the other POSTGRES_*].",
    ),
    "sqlite_path": click.option(
        "--db", "sqlite_path", metavar="PATH", help="SQLite file [$CMO_SQLITE_PATH; .cmo/dev.db]."
    ),
    "metrics_listen": click.option(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="/metrics, /healthz and /readyz address; '' turns it off [$CMO_METRICS_LISTEN].",
    ),
    "log_level": click.option(
        "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), help="[$CMO_LOG_LEVEL or $LOG_LEVEL; INFO]"
    ),
    "log_format": click.option("--log-format", type=click.Choice(LOG_FORMATS), help="[$CMO_LOG_FORMAT; text]"),
    "blob_backend": click.option(
        "--blob-backend", type=click.Choice(BLOB_BACKENDS), help="Where blobs go [$CMO_BLOB_BACKEND; filesystem]."
    ),
    "blob_dir": click.option("--blob-dir", metavar="DIR", help="Filesystem blob store's directory [$CMO_BLOB_DIR]."),
    "pool_size": click.option("--pool-size", type=int, help="Postgres connections [$CMO_POOL_SIZE; 8]."),
}
_FLAGS = {"sqlite_path": "--db", **{name: "--" + name.replace("_", "-") for name in _OPTIONS if name != "sqlite_path"}}
# The variable each flag stands for, then those it replaces too: a flag wins even over a malformed one.
_VARIABLES: dict[str, tuple[str, ...]] = {
    "listen": ("CMO_LISTEN",),
    "database_url": ("CMO_DATABASE_URL", *POSTGRES_VARIABLES),
    "sqlite_path": ("CMO_SQLITE_PATH",),
    "metrics_listen": ("CMO_METRICS_LISTEN",),
    "log_level": LOG_LEVEL_VARIABLES,
    "log_format": ("CMO_LOG_FORMAT",),
    "blob_backend": ("CMO_BLOB_BACKEND",),
    "blob_dir": ("CMO_BLOB_DIR",),
    "pool_size": ("CMO_POOL_SIZE",),
}

SERVE = ("listen", "metrics_listen", "log_level", "log_format", "blob_backend", "blob_dir")
LOGGING = ("log_level", "log_format")


def _options(*names: str) -> Callable[[F], F]:
    """Add the flags of these settings to a command, in this order in --help."""

    def add(command: F) -> F:
        for name in reversed(names):
            command = _OPTIONS[name](command)
        return command

    return add


def _load(flags: dict[str, Any], *, metrics_by_default: bool = False, **fixed: Any) -> ServerConfig:
    """The config from the environment, `flags` (the user's) and `fixed` (the command's) winning.

    Each flag given (not None) takes the place of its variables. A bad value is reported under the
    name the user gave it: its flag, else its variable.
    """
    given = {name: value for name, value in {**flags, **fixed}.items() if value is not None}
    hidden = {variable for name in given for variable in _VARIABLES[name]}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update({_VARIABLES[name][0]: str(value) for name, value in given.items()})
    try:
        return ServerConfig.from_env(env, metrics_by_default=metrics_by_default)
    except ConfigError as err:
        for name, value in flags.items():
            if value is not None and err.variable in _VARIABLES[name]:
                raise click.BadParameter(err.reason, param_hint=f"'{_FLAGS[name]}'") from None
        raise click.ClickException(str(err)) from None


def _config(
    flags: dict[str, Any], *, metrics_by_default: bool = False, dev_ui: bool = False, **fixed: Any
) -> ServerConfig:
    """`_load`, then logging set up as configured, unknown variables warned of and the settings logged.

    `dev_ui`: the web UI on by default (`start-dev`), applied before the settings are logged.
    """
    config = _load(flags, metrics_by_default=metrics_by_default, **fixed)
    if dev_ui:
        config = config.with_dev_ui()
    configure_logging(config.telemetry.log_level, config.telemetry.log_format)
    for warning in unknown_settings(os.environ):
        logger.warning("%s", warning)
    logger.info("configuration", extra={"config": config.redacted()})
    return config


def _require_postgres(config: ServerConfig) -> None:
    if config.store.database_url:
        return
    stray = [name for name in POSTGRES_VARIABLES if os.environ.get(name)]
    hint = f" ({', '.join(stray)} set, but not POSTGRES_HOST)" if stray else ""
    raise click.ClickException(
        "no database: set CMO_DATABASE_URL, or POSTGRES_HOST with POSTGRES_USER, POSTGRES_PASSWORD and"
        f" POSTGRES_DB, or pass --database-url{hint}; `cmo-server start-dev` serves on SQLite"
    )


def _require_auth_decision(config: ServerConfig) -> None:
    """`start` serves a network: it answers anyone only when told to (CMO_AUTH=none), and says so."""
    if config.auth.enabled:
        return
    if os.environ.get("CMO_AUTH", "").strip().lower() != "none":
        raise click.ClickException(
            "no authentication: set CMO_AUTH=jwt with CMO_AUTH_KEYS_FILE and CMO_AUTH_ISSUER, or CMO_AUTH=mtls"
            ' with the CMO_TLS_* files and CMO_AUTH_MTLS_SUBJECTS_FILE (README, "Authentication"), or'
            " CMO_AUTH=none to answer every caller; `cmo-server start-dev` needs neither"
        )
    logger.warning("CMO_AUTH=none: every caller may read and change every namespace; do not expose this port")


def _check_free(address: str, flag: str) -> None:
    """Fail with one line if `address` (HOST:PORT) is taken, before anything starts to listen.

    gRPC would only say that it failed to bind, with a traceback; the metrics endpoint, after the
    gRPC port is open. A race with another process remains, and is reported less kindly.
    """
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        return  # a host that does not resolve: the server's own error names it
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no clash
            try:
                probe.bind(where)
            except OSError as err:
                if err.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise click.ClickException(
                        f"cannot listen on {address}: {err.strerror} (another cmo-server?); give another with {flag}"
                    ) from None


def _serve(config: ServerConfig) -> None:
    _check_free(config.listen, "--listen or $CMO_LISTEN")
    if config.telemetry.metrics_listen:
        _check_free(config.telemetry.metrics_listen, "--metrics-listen or $CMO_METRICS_LISTEN ('' turns it off)")
    try:
        asyncio.run(serve_forever(config))
    except BlobStoreUnavailable as err:  # unreachable S3, refused credentials, missing bucket
        raise click.ClickException(f"blob store: {err}") from None
    except ConfigError as err:  # a file a setting names, read at start: a key, a certificate, the subjects
        raise click.ClickException(str(err)) from None
    except RuntimeError as err:  # taken between the check above and gRPC's bind, or not an address of this host
        if "Failed to bind" not in str(err):
            raise
        raise click.ClickException(f"cannot listen on {config.listen}; give another with --listen") from None
    except ExceptionGroup:  # its traceback was logged when the loop crashed
        raise click.ClickException("stopped: a background loop crashed (the log above says which and why)") from None


@click.group()
@click.version_option(__version__, "--version", prog_name="cmo-server", message="%(prog)s %(version)s")
def main() -> None:
    """The CMO orchestrator. Settings: CMO_* and the standard variables, flags win (see `config`)."""


@main.command("start-dev")
@_options("sqlite_path", *SERVE)
def start_dev(**flags: Any) -> None:
    """Serve on the embedded SQLite file, with the web UI: no database server needed."""
    _serve(_config(flags, database_url="", dev_ui=True))


@main.command()
@_options("listen", "database_url", "pool_size", *SERVE[1:])
def start(**flags: Any) -> None:
    """Serve on Postgres ($CMO_DATABASE_URL or POSTGRES_*); migrates it first."""
    config = _config(flags, metrics_by_default=True)
    _require_postgres(config)
    _require_auth_decision(config)
    _serve(config)


@main.command()
@_options("database_url", "sqlite_path", *LOGGING)
def migrate(**flags: Any) -> None:
    """Apply pending migrations and exit (Postgres, or the SQLite file given by --db)."""
    if flags["sqlite_path"] is not None and flags["database_url"] is not None:
        raise click.UsageError("give --db or --database-url, not both")
    config = _config(flags, database_url="" if flags["sqlite_path"] is not None else None)

    async def run() -> None:
        async with open_store(config):
            pass

    asyncio.run(run())
    target = "SQLite " + config.store.sqlite_path if not config.store.database_url else "Postgres"
    click.echo(f"{target} is migrated")


@main.command("config")
@click.option("--dev", is_flag=True, help="As `start-dev` sees it (SQLite); default: as `start` does.")
@_options("listen", "database_url", "sqlite_path", "pool_size", *SERVE[1:])
def show_config(dev: bool, **flags: Any) -> None:
    """Check the settings and print them as JSON, secrets masked; exit 1 naming a bad variable."""
    if dev:
        if flags["database_url"] is not None:
            raise click.UsageError("--database-url does not apply with --dev")
        config = _load(flags, database_url="")
    else:
        config = _load(flags, metrics_by_default=True)
        _require_postgres(config)
    for warning in unknown_settings(os.environ):
        click.echo(f"warning: {warning}", err=True)
    click.echo(json.dumps(config.redacted(), indent=2))


if __name__ == "__main__":
    sys.exit(main())
