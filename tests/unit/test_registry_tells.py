"""The registry tells its listeners of every agent this replica makes UNAVAILABLE, even when the
change's own notification reached the watchers first (a fake store orders it so)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cmo_server.domain import Namespace
from cmo_server.registry import Agent, AgentStatus, AgentStore, Registry

NS = Namespace()


def _agent(status: AgentStatus, revision: int) -> Agent:
    now = datetime.now(UTC)
    return Agent(
        namespace=NS, agent_id="a1", kind="specialist", name="a", version="1", capabilities=("c",), topics=(),
        metadata={}, status=status, status_reason="lease lapsed", load=0.0, lease=timedelta(seconds=1),
        lease_expires_at=now, registered_at=now, last_heartbeat_at=now, last_poll_at=None, revision=revision,
    )  # fmt: skip


class _NotifiesFirst:
    """A store whose lapse is heard by the push before the sweep that made it sees its rows."""

    def __init__(self) -> None:
        self.changed: Callable[[Namespace, str, int], None] | None = None
        self.lapsed = _agent(AgentStatus.UNAVAILABLE, 7)

    async def watch_agents(self, changed: Callable[[Namespace, str, int], None], resync: Callable[[], None]) -> None:
        self.changed = changed
        await asyncio.Event().wait()

    async def lapse_agents(self, *, limit: int) -> list[Agent]:
        assert self.changed is not None
        self.changed(NS, "a1", 7)
        await asyncio.sleep(0.05)  # the push's read of the agent completes first
        return [self.lapsed]

    async def get_agent(self, namespace: Namespace, agent_id: str) -> Agent | None:
        return self.lapsed

    async def list_agents(self, *args: Any, **kwargs: Any) -> list[Agent]:
        return []

    async def note_polls(self, polls: Any) -> None:
        return None


async def test_a_lapse_this_replica_records_reaches_its_listeners_once_and_its_watchers_once() -> None:
    store = _NotifiesFirst()
    registry = Registry(cast(AgentStore, store), sweep_interval=3600)
    told: list[Agent] = []
    registry.on_unavailable(told.append)
    hearing = asyncio.create_task(registry.run())
    events = registry.watch(NS, skip_current=True)
    try:
        assert (await anext(events)).kind == "synced"
        await asyncio.sleep(0.01)  # the push is listening
        await registry.sweep()
        assert told == [store.lapsed]
        event = await asyncio.wait_for(anext(events), 1)
        assert event.agent == store.lapsed
        with_more = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.1)
        assert not with_more.done()  # the watcher heard of revision 7 once
        with_more.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await with_more
    finally:
        await events.aclose()
        hearing.cancel()
        await asyncio.gather(hearing, return_exceptions=True)
