"""Tell the runs waiting for an agent's answer that it will not come: the agent has left.

A step that asked an agent found by capability recorded the agent's id with its request. When the
registry sees that agent become UNAVAILABLE (its lease lapsed, it said so, or it deregistered),
each run whose current step asked it is signalled `{"cmo_agent_unavailable": ...}` on the
request's name, as an answer would be; the step then asks another agent (`cmo.a2a.invoke`). The
signal's request id names the agent's revision, so a replica that sees the same change twice, or
a second replica, sends nothing new.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from cmo.a2a.invoke import unavailable_notice
from cmo_server.domain import NewSignal
from cmo_server.engine import Engine
from cmo_server.errors import CmoServerError
from cmo_server.registry import Agent
from cmo_server.store import RequestStore

__all__ = ["UnansweredRequests"]

logger = logging.getLogger(__name__)

REMEMBERED = 10_000


class UnansweredRequests:
    """The registry's `on_unavailable` listener that signals the runs an agent left waiting."""

    def __init__(self, engine: Engine, requests: RequestStore) -> None:
        self._engine = engine
        self._requests = requests
        self._telling: set[asyncio.Task[None]] = set()
        self._done: collections.OrderedDict[tuple[str, str, int], None] = collections.OrderedDict()
        """Departures (namespace, agent, revision) whose runs this replica has told: the registry
        tells of a departure again for a while, for replicas that died before telling."""
        self.told = 0
        """Runs signalled so far."""

    def agent_unavailable(self, agent: Agent) -> None:
        if (str(agent.namespace), agent.agent_id, agent.revision) in self._done:
            return
        task = asyncio.get_running_loop().create_task(self.tell(agent))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def tell(self, agent: Agent) -> None:
        """Signal every run whose current step waits for `agent`'s answer."""
        try:
            waiting = await self._requests.requests_awaiting(agent.namespace, agent.agent_id)
        except Exception:
            logger.exception("could not find the runs waiting for agent %s", agent.agent_id)
            return
        notice = unavailable_notice(agent.agent_id, agent.status_reason or "unavailable")
        for run_id, name in waiting:
            signal = NewSignal(
                agent.namespace,
                run_id,
                name=name,
                payload=notice,
                request_id=f"unavailable:{agent.agent_id}:{agent.revision}",
            )
            try:
                await self._engine.signal_run(signal)
            except CmoServerError as err:  # the run ended meanwhile
                logger.info("run %s was not told agent %s left: %s", run_id, agent.agent_id, err)
                continue
            self.told += 1
            logger.info("run %s: agent %s left without answering (%s)", run_id, agent.agent_id, agent.status_reason)
        self._done[(str(agent.namespace), agent.agent_id, agent.revision)] = None
        while len(self._done) > REMEMBERED:
            self._done.popitem(last=False)
