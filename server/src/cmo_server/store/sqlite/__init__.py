"""The embedded SQLite backend (the default of `cmo-server start-dev`)."""

from cmo_server.store.sqlite._store import SqliteStore

__all__ = ["SqliteStore"]
