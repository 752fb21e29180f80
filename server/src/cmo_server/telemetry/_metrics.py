"""Prometheus metrics of one server: engine counters and histograms, store gauges read on scrape.

Every metric lives in a `CollectorRegistry` owned by the `PrometheusMetrics` instance, never in
prometheus_client's global registry, so several servers in one process (tests, embedded use)
keep separate counts.

Label values chosen by clients are bounded: graph ids, node ids and task queues each make a new
series of every metric that carries them, kept for the life of the server, so a client using
fresh names would grow every scrape without end. The first `MAX_LABEL_VALUES` values seen keep
their names and later ones are counted as "other"; an activity kind is one the SDK records or
"other".
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cmo_server.domain import DEFAULT_NAMESPACE, ActivityRecord, Namespace, RunStatus, Task, TaskKey
from cmo_server.engine import EngineMetrics
from cmo_server.store import Store

__all__ = ["PrometheusMetrics", "StoreGauges"]

logger = logging.getLogger(__name__)

POLL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
"""A poll returns at once when a task is ready, else after up to its wait (20 s by default)."""
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Steps run from milliseconds (pure code) to many minutes (agents calling models and tools)."""
SEEN_ACTIVITIES = 4096
"""How many recent activity records are remembered to count a re-sent one once."""
STORE_GAUGE_TTL = 5.0
"""Seconds a store count is reused by the next scrapes (several Prometheus servers, or a fast one)."""
MAX_LABEL_VALUES = 100
"""Distinct values (or (graph_id, node_id) pairs) a client-chosen label keeps; later ones are OTHER."""
OTHER = "other"
"""The label value of everything past the bound, and of activity kinds the SDK does not record."""
KNOWN_KINDS = frozenset({"call", "http", "artifact.put", "artifact.get", "signal", "timer"})
"""The activity kinds of the SDK (user-defined activities are "call"); extend it with the SDK's."""


class BoundedLabels:
    """Label values of one metric, at most `limit` distinct tuples; each new one past that is OTHER.

    The first values seen keep their names for the life of the server, so a series never
    changes its name once scraped.
    """

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[tuple[str, ...]] = set()

    def of(self, *values: str) -> tuple[str, ...]:
        """The label values to report for `values`."""
        if values in self._seen:
            return values
        if len(self._seen) < self._limit:
            self._seen.add(values)
            return values
        return (OTHER,) * len(values)


def kind_label(kind: str) -> str:
    """The `kind` label of an activity: known kinds as they are, any other as OTHER."""
    return kind if kind in KNOWN_KINDS else OTHER


class PrometheusMetrics(EngineMetrics):
    """The engine's hooks as Prometheus metrics, in a registry of their own (`registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        """Where these metrics (and the store gauges, once added) are registered."""
        r = self.registry
        self._dispatched = Counter(
            "cmo_tasks_dispatched",
            "Tasks leased to workers: claimed by a poll, handed to a parked poll, or eagerly with a checkpoint.",
            ["task_queue"],
            registry=r,
        )
        self._poll_wait = Histogram(
            "cmo_poll_wait_seconds",
            "How long a PollTask waited before it returned a task or nothing.",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self._step_duration = Histogram(
            "cmo_step_duration_seconds",
            "From a step attempt's start on its worker to its checkpoint on the server.",
            ["graph_id", "node_id"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self._activities = Counter(
            "cmo_activities_recorded",
            "Activity records received from workers, each (run, step, seq) counted once per server.",
            ["kind"],
            registry=r,
        )
        self._activity_duration = Histogram(
            "cmo_activity_duration_seconds",
            "How long recorded activities ran on their workers (all their tries), as the workers measured it.",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self._lease_expiries = Counter(
            "cmo_lease_expiries",
            "Tasks claimed from an attempt whose lease had lapsed: its worker died, stalled or lost the server.",
            registry=r,
        )
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._queues = BoundedLabels()
        self._steps = BoundedLabels()

    def task_dispatched(self, task: Task) -> None:
        """See `EngineMetrics.task_dispatched`."""
        self._dispatched.labels(*self._queues.of(task.task_queue)).inc()
        if task.previous_lease_expired:
            self._lease_expiries.inc()

    def poll_waited(self, seconds: float, *, got_task: bool) -> None:
        """See `EngineMetrics.poll_waited`."""
        self._poll_wait.observe(seconds)

    def step_completed(self, graph_id: str, node_id: str, *, started_at: datetime) -> None:
        """See `EngineMetrics.step_completed`.

        The start is the worker's clock and the end the server's: skew between them shifts the
        value (a negative one is dropped).
        """
        seconds = (datetime.now(UTC) - started_at).total_seconds()
        if seconds >= 0:
            self._step_duration.labels(*self._steps.of(graph_id, node_id)).observe(seconds)

    def activity_recorded(self, key: TaskKey, activity: ActivityRecord) -> None:
        """See `EngineMetrics.activity_recorded`.

        A record not yet confirmed when its step ends is sent again riding on the checkpoint, so
        the same record often arrives twice within milliseconds: recent ones are remembered.
        """
        seen = (key.run_id, key.step_index, activity.seq)
        if seen in self._seen:
            return
        self._seen[seen] = None
        if len(self._seen) > SEEN_ACTIVITIES:
            self._seen.popitem(last=False)
        kind = kind_label(activity.kind)
        self._activities.labels(kind).inc()
        if activity.duration is not None:
            self._activity_duration.labels(kind).observe(activity.duration.total_seconds())


class StoreGauges(Collector):
    """`cmo_queue_depth` and `cmo_runs`, counted by the store and cached for `ttl` seconds.

    prometheus_client collects synchronously; the store is async. So the HTTP endpoint awaits
    `refresh()` before it renders the registry, and `collect()` only reads what refresh left.
    Also `cmo_polls_parked`, the engine's parked long-polls, read at collect time.
    """

    def __init__(self, store: Store, *, parked_polls: Callable[[], int], ttl: float = STORE_GAUGE_TTL) -> None:
        self._store = store
        self._parked_polls = parked_polls
        self._ttl = ttl
        self._depths: dict[tuple[Namespace, str], int] | None = None
        self._runs: dict[tuple[Namespace, RunStatus], int] | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._queues = BoundedLabels()
        """(namespace, task queue) pairs."""
        self._namespaces = BoundedLabels()

    async def refresh(self) -> None:
        """Count again if the counts are older than the TTL; a failed count is logged and left out."""
        async with self._lock:  # concurrent scrapes share one count
            loop = asyncio.get_running_loop()
            if loop.time() - self._read_at < self._ttl:
                return
            try:
                self._depths = await self._store.queue_depths()
                self._runs = await self._store.count_runs_by_status()
            except Exception:
                logger.exception("counting queue depths and runs for metrics failed")
                self._depths = self._runs = None
            self._read_at = loop.time()

    def collect(self) -> Iterator[Metric]:
        """The gauges as of the last refresh."""
        parked = GaugeMetricFamily("cmo_polls_parked", "PollTask calls waiting for a task on this server.")
        parked.add_metric([], self._parked_polls())
        yield parked
        if self._depths is not None:
            depth = GaugeMetricFamily(
                "cmo_queue_depth",
                "Ready tasks waiting for a worker, by namespace and task queue.",
                labels=["namespace", "task_queue"],
            )
            depths: dict[tuple[str, ...], int] = {}
            for (namespace, queue), count in sorted(self._depths.items()):
                labels = self._queues.of(str(namespace), queue)
                depths[labels] = depths.get(labels, 0) + count
            for labels, count in depths.items():
                depth.add_metric(list(labels), count)
            yield depth
        if self._runs is not None:
            runs = GaugeMetricFamily("cmo_runs", "Runs by namespace and status.", labels=["namespace", "status"])
            # Every status of every namespace that has runs, zeros included, so a status that
            # empties drops to 0 instead of vanishing; namespaces past the bound add up in "other".
            counts: dict[tuple[str, RunStatus], int] = {}
            for (namespace, status), count in self._runs.items():
                (label,) = self._namespaces.of(str(namespace))
                counts[(label, status)] = counts.get((label, status), 0) + count
            for label in sorted({label for label, _ in counts} or {str(DEFAULT_NAMESPACE)}):
                for status in RunStatus:
                    runs.add_metric([label, status.name], counts.get((label, status), 0))
            yield runs

    def describe(self) -> Iterator[Metric]:
        """Nothing: the registry must not collect (and so count) when this is registered."""
        return iter(())
