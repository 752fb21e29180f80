"""Who polls which queue for which graph versions, as this server sees it: bounded, in memory."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cmo_server.domain import Namespace

__all__ = ["Poller", "PollerBook"]

MAX_POLLERS = 10_000
"""(worker, queue) pairs kept; the least recently seen goes first."""


@dataclass(frozen=True, slots=True)
class Poller:
    """A worker's last poll of one queue."""

    worker_id: str
    task_queue: str
    graph_keys: tuple[str, ...]
    last_poll: datetime


class PollerBook:
    """The last poll of each (namespace, queue, worker), indexed by queue."""

    def __init__(self, max_pollers: int = MAX_POLLERS) -> None:
        self._max = max_pollers
        self._order: collections.OrderedDict[tuple[Namespace, str, str], None] = collections.OrderedDict()
        self._by_queue: dict[tuple[Namespace, str], dict[str, Poller]] = {}

    def polled(self, namespace: Namespace, worker_id: str, queues: Sequence[str], graph_keys: Sequence[str]) -> None:
        """A worker polled these queues for these graph versions (graph keys), now."""
        now = datetime.now(UTC)
        keys = tuple(graph_keys)
        for queue in queues:
            key = (namespace, queue, worker_id)
            self._order.pop(key, None)
            self._order[key] = None
            self._by_queue.setdefault((namespace, queue), {})[worker_id] = Poller(worker_id, queue, keys, now)
        while len(self._order) > self._max:
            (ns, queue, worker), _ = self._order.popitem(last=False)
            workers = self._by_queue[(ns, queue)]
            del workers[worker]
            if not workers:
                del self._by_queue[(ns, queue)]

    def of(self, namespace: Namespace, queue: str, graph_key: str) -> list[Poller]:
        """The workers seen polling `queue` for `graph_key`, latest first."""
        workers = self._by_queue.get((namespace, queue), {})
        found = [p for p in workers.values() if graph_key in p.graph_keys]
        return sorted(found, key=lambda p: p.last_poll, reverse=True)

    def in_namespace(self, namespace: Namespace) -> list[Poller]:
        """Every poller seen in `namespace`, by queue, latest first within a queue."""
        found = [p for (ns, _), workers in self._by_queue.items() if ns == namespace for p in workers.values()]
        return sorted(found, key=lambda p: (p.task_queue, -p.last_poll.timestamp()))

    def namespaces(self) -> list[Namespace]:
        """The namespaces some worker was seen polling in, sorted."""
        return sorted({ns for ns, _ in self._by_queue})
