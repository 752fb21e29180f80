"""Durable state behind one `Store` protocol, with SQLite and Postgres backends."""

from cmo_server.store._offloading import OffloadingStore
from cmo_server.store._protocol import GraphPage, ReadyListener, RunPage, Store

__all__ = ["GraphPage", "OffloadingStore", "ReadyListener", "RunPage", "Store"]
