"""`cmo-server`: start the orchestrator (dev or production), migrate its database, show its config.

Settings come from the environment (`ServerConfig.from_env`); a flag wins over its variables. A bad
variable stops the command with one line naming it (exit 1); a bad flag, naming the flag (exit 2).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cmo_server._logging import configure_logging
from cmo_server.app import open_store, serve_forever
from cmo_server.blob import BlobStoreUnavailable
from cmo_server.config import (
    BLOB_BACKENDS,
    DEFAULT_METRICS_LISTEN,
    LOG_LEVELS,
    POSTGRES_VARIABLES,
    SETTING_VARIABLES,
    ConfigError,
    ServerConfig,
)

__all__ = ["main"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Each flag sets the ServerConfig field its parameter is named after.
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
    "log_format": click.option("--log-format", type=click.Choice(("text", "json")), help="[$CMO_LOG_FORMAT; text]"),
    "blob_backend": click.option(
        "--blob-backend", type=click.Choice(BLOB_BACKENDS), help="Where blobs go [$CMO_BLOB_BACKEND; filesystem]."
    ),
    "blob_dir": click.option("--blob-dir", metavar="DIR", help="Filesystem blob store's directory [$CMO_BLOB_DIR]."),
    "pool_size": click.option("--pool-size", type=int, help="Postgres connections [$CMO_POOL_SIZE; 8]."),
}
_FLAGS = {"sqlite_path": "--db", **{name: "--" + name.replace("_", "-") for name in _OPTIONS if name != "sqlite_path"}}

SERVE = ("listen", "metrics_listen", "log_level", "log_format", "blob_backend", "blob_dir")
LOGGING = ("log_level", "log_format")


def _options(*names: str) -> Callable[[F], F]:
    """Add the flags of these settings to a command, in this order in --help."""

    def add(command: F) -> F:
        for name in reversed(names):
            command = _OPTIONS[name](command)
        return command

    return add


def _load(flags: dict[str, Any], **fixed: Any) -> ServerConfig:
    """The config from the environment, `flags` (the user's) and `fixed` (the command's) winning.

    A bad value is reported under the name the user gave it: its flag, else its variable.
    """
    settings = {**flags, **{k: v for k, v in fixed.items() if v is not None}}
    try:
        return ServerConfig.from_env(**settings)
    except ConfigError as err:
        for name, value in flags.items():
            if value is not None and err.variable in SETTING_VARIABLES.get(name, ()):
                raise click.BadParameter(err.reason, param_hint=f"'{_FLAGS[name]}'") from None
        raise click.ClickException(str(err)) from None


def _config(flags: dict[str, Any], **fixed: Any) -> ServerConfig:
    """`_load`, then logging set up as configured and the settings logged (redacted) once."""
    config = _load(flags, **fixed)
    configure_logging(config.log_level, config.log_format)
    logger.info("configuration %s", json.dumps(config.redacted()))
    return config


def _require_postgres(config: ServerConfig) -> None:
    if config.database_url:
        return
    stray = [name for name in POSTGRES_VARIABLES if os.environ.get(name)]
    hint = f" ({', '.join(stray)} set, but not POSTGRES_HOST)" if stray else ""
    raise click.ClickException(
        "no database: set CMO_DATABASE_URL, or POSTGRES_HOST with POSTGRES_USER, POSTGRES_PASSWORD and"
        f" POSTGRES_DB, or pass --database-url{hint}; `cmo-server start-dev` serves on SQLite"
    )


def _production(flags: dict[str, Any]) -> dict[str, Any]:
    """What `start` sets unlike `start-dev`: /metrics and the probes are served unless told otherwise."""
    if flags["metrics_listen"] is None and "CMO_METRICS_LISTEN" not in os.environ:
        return {"metrics_listen": DEFAULT_METRICS_LISTEN}
    return {}  # CMO_METRICS_LISTEN="" or --metrics-listen "" turns them off


def _serve(config: ServerConfig) -> None:
    try:
        asyncio.run(serve_forever(config))
    except BlobStoreUnavailable as err:  # unreachable S3, refused credentials, missing bucket
        raise click.ClickException(f"blob store: {err}") from None


@click.group()
def main() -> None:
    """The CMO orchestrator. Settings: CMO_* and the standard variables, flags win (see `config`)."""


@main.command("start-dev")
@_options("sqlite_path", *SERVE)
def start_dev(**flags: Any) -> None:
    """Serve on the embedded SQLite file: no database server needed."""
    _serve(_config(flags, database_url=""))


@main.command()
@_options("listen", "database_url", "pool_size", *SERVE[1:])
def start(**flags: Any) -> None:
    """Serve on Postgres ($CMO_DATABASE_URL or POSTGRES_*); migrates it first."""
    config = _config(flags, **_production(flags))
    _require_postgres(config)
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
    target = "SQLite " + config.sqlite_path if not config.database_url else "Postgres"
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
        config = _load(flags, **_production(flags))
        _require_postgres(config)
    click.echo(json.dumps(config.redacted(), indent=2))


if __name__ == "__main__":
    sys.exit(main())
