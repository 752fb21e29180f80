"""Durable state behind one `Store` protocol, with SQLite and Postgres backends."""

from cmo_server.store._protocol import RunPage, Store

__all__ = ["RunPage", "Store"]
