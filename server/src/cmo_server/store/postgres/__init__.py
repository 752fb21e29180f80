"""The Postgres backend (`cmo-server start`): pooled connections, SKIP LOCKED task claims."""

from cmo_server.store.postgres._store import PostgresStore

__all__ = ["PostgresStore"]
