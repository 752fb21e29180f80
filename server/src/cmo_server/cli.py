"""`cmo-server`: start the orchestrator (dev or production) and migrate its database."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import click

from cmo_server._logging import configure_logging
from cmo_server.app import open_store, serve_forever
from cmo_server.blob import BlobStoreUnavailable
from cmo_server.config import DEFAULT_METRICS_LISTEN, ConfigError, ServerConfig

__all__ = ["main"]


def _config(**overrides: Any) -> ServerConfig:
    try:
        config = ServerConfig.from_env(**overrides)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    configure_logging(config.log_level, config.log_format)
    return config


def _serve(config: ServerConfig) -> None:
    try:
        asyncio.run(serve_forever(config))
    except BlobStoreUnavailable as err:  # unreachable S3, refused credentials, missing bucket
        raise click.ClickException(f"blob store: {err}") from None


@click.group()
def main() -> None:
    """The CMO orchestrator."""


@main.command("start-dev")
@click.option("--db", "sqlite_path", help="SQLite file (default .cmo/dev.db, or $CMO_SQLITE_PATH).")
@click.option("--listen", help="host:port to serve on (default 127.0.0.1:7233, or $CMO_LISTEN).")
def start_dev(sqlite_path: str | None, listen: str | None) -> None:
    """Serve on the embedded SQLite file: no database server needed."""
    config = _config(sqlite_path=sqlite_path, listen=listen, database_url="")
    _serve(config)


@main.command()
@click.option("--listen", help="host:port to serve on (default 127.0.0.1:7233, or $CMO_LISTEN).")
def start(listen: str | None) -> None:
    """Serve on Postgres ($CMO_DATABASE_URL); migrates it first."""
    # Production serves /metrics and the probes unless CMO_METRICS_LISTEN says otherwise ("" = off).
    metrics = None if "CMO_METRICS_LISTEN" in os.environ else DEFAULT_METRICS_LISTEN
    config = _config(listen=listen, metrics_listen=metrics)
    if not config.database_url:
        raise click.UsageError("CMO_DATABASE_URL must be set for `start` (use `start-dev` for SQLite)")
    _serve(config)


@main.command()
@click.option("--db", "sqlite_path", help="Migrate this SQLite file instead of $CMO_DATABASE_URL.")
def migrate(sqlite_path: str | None) -> None:
    """Apply pending migrations and exit."""
    config = _config(sqlite_path=sqlite_path, database_url="" if sqlite_path else None)

    async def run() -> None:
        async with open_store(config):
            pass

    asyncio.run(run())
    target = "SQLite " + config.sqlite_path if not config.database_url else "Postgres"
    click.echo(f"{target} is migrated")


if __name__ == "__main__":
    sys.exit(main())
