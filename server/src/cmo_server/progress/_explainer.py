"""Explaining the unfinished runs of a page at once: one task read, one registry read per queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from cmo_server.domain import Namespace, Run
from cmo_server.progress._explain import Progress, explain
from cmo_server.progress._pollers import Poller, PollerBook
from cmo_server.progress._store import ProgressStore, TaskSnapshot
from cmo_server.registry import AgentStatus, Registry

__all__ = ["Explainer"]

RECENT = timedelta(seconds=90)
"""A poll this recent counts as a worker polling now (a long-poll lasts up to a minute)."""
LIVE = (AgentStatus.STARTING, AgentStatus.HEALTHY, AgentStatus.DEGRADED)


class Explainer:
    """What each unfinished run waits for, from the store, this server's pollers and the registry."""

    def __init__(self, store: ProgressStore, pollers: PollerBook, registry: Registry | None = None) -> None:
        self._store = store
        self._pollers = pollers
        self._registry = registry

    async def explain(self, namespace: Namespace, runs: Sequence[Run]) -> dict[str, Progress]:
        """The progress of each unfinished run among `runs`, by run id."""
        unfinished = [r for r in runs if not r.status.terminal]
        if not unfinished:
            return {}
        tasks = await self._store.current_tasks(namespace, [r.run_id for r in unfinished])
        polled: dict[tuple[str, str], list[Poller]] = {}
        explained = {}
        for run in unfinished:
            task = tasks.get(run.run_id)
            pollers: list[Poller] = []
            if task is not None and task.wait_kind is None:
                key = (task.task_queue, task.graph_key)
                if key not in polled:
                    polled[key] = await self._pollers_of(namespace, task)
                pollers = polled[key]
            if (progress := explain(run, task, pollers, recent=RECENT)) is not None:
                explained[run.run_id] = progress
        return explained

    async def _pollers_of(self, namespace: Namespace, task: TaskSnapshot) -> list[Poller]:
        seen = self._pollers.of(namespace, task.task_queue, task.graph_key)
        if self._registry is None or any(task.now - p.last_poll <= RECENT for p in seen):
            return seen
        # Another replica may have seen its polls: the registry records each worker's last poll.
        graph = task.graph_key.rpartition("/")[2]
        agents, _ = await self._registry.list_agents(
            namespace, statuses=LIVE, kind="worker", capability=f"graph:{graph}", limit=100, page_token=""
        )
        known = {p.worker_id for p in seen}
        for agent in agents:
            worker_id = agent.metadata.get("worker_id", agent.agent_id)
            if f"queue:{task.task_queue}" in agent.capabilities and agent.last_poll_at and worker_id not in known:
                seen.append(Poller(worker_id, task.task_queue, (task.graph_key,), agent.last_poll_at))
        return sorted(seen, key=lambda p: p.last_poll, reverse=True)
