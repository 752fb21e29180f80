"""Durable state behind one `Store` protocol, with SQLite and Postgres backends."""

from cmo_server.store._offloading import OffloadingStore
from cmo_server.store._protocol import ReadyListener, RunPage, Store

__all__ = ["OffloadingStore", "ReadyListener", "RunPage", "Store"]
