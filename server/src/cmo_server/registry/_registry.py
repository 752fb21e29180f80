"""The registry's rules: leases, the status machine, discovery, and telling watchers what changed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from cmo_server.domain import Namespace
from cmo_server.engine import GateDenial
from cmo_server.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted, shown
from cmo_server.registry._agents import Agent, AgentStatus, AgentTopic, HeartbeatOutcome, Registration
from cmo_server.registry._store import AgentStore, HeartbeatRefused
from cmo_server.store._pages import decode_id_page_token, encode_id_page_token

__all__ = ["DEFAULT_LEASE", "MAX_LEASE", "MIN_LEASE", "Registry", "WatchEvent"]

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=60)
MIN_LEASE = timedelta(seconds=1)
MAX_LEASE = timedelta(hours=1)
WATCH_BACKLOG = 1000
"""Changes a watcher may fall behind by before its watch is ended."""
LAPSE_BATCH = 1000
PURGE_EVERY = 60.0
RECHECK_EVERY = 30.0
RECHECK_WITHIN = timedelta(minutes=10)
"""The listeners are told again of agents that left this long ago at most, every RECHECK_EVERY
seconds: a replica that recorded a departure may have died before it told them (their work is
idempotent: the runs told already are not told twice)."""
PURGE_AFTER = timedelta(days=7)
"""How long an UNAVAILABLE agent is kept, for operators to see, before it is deleted."""

WatchKind = Literal["current", "synced", "changed"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: WatchKind
    agent: Agent | None = None


@dataclass(eq=False, slots=True)
class _Watcher:
    queue: asyncio.Queue[Agent] = field(default_factory=lambda: asyncio.Queue(WATCH_BACKLOG))
    overflowed: bool = False


class Registry:
    """Agents of every namespace: registered, kept alive by heartbeats, found by capability.

    A lease that lapses reads UNAVAILABLE at once (the store accounts for it in every read); the
    sweep, every `sweep_interval` on every replica, records it, which tells watchers and the
    `on_unavailable` listeners. Changes other replicas make reach this one's watchers through the
    store's push (Postgres) — each watcher is told of each revision once.
    """

    def __init__(
        self,
        store: AgentStore,
        *,
        sweep_interval: float = 1.0,
        gate: Callable[[Registration], GateDenial | None] | None = None,
    ) -> None:
        """`gate`, if any, is asked about each registration; a denial refuses it (PERMISSION_DENIED)."""
        self._store = store
        self._gate = gate
        self._sweep_interval = sweep_interval
        self._watchers: dict[Namespace, set[_Watcher]] = defaultdict(set)
        self._told: dict[tuple[Namespace, str], int] = {}
        """The last revision of each agent the watchers were told of."""
        self._polls: dict[tuple[Namespace, str], datetime] = {}
        self._unavailable: list[Callable[[Agent], None]] = []
        self._deregistered: list[Callable[[Agent], None]] = []

    def on_deregistered(self, listener: Callable[[Agent], None]) -> None:
        """Call `listener` with each agent that deregisters through this replica."""
        self._deregistered.append(listener)

    def on_unavailable(self, listener: Callable[[Agent], None]) -> None:
        """Call `listener` with each agent this replica sees become UNAVAILABLE."""
        self._unavailable.append(listener)

    # -- agents' calls ----------------------------------------------------------------------------

    async def register(
        self,
        namespace: Namespace,
        agent_id: str,
        *,
        kind: str,
        name: str,
        version: str,
        capabilities: Sequence[str],
        topics: Sequence[AgentTopic],
        metadata: Mapping[str, str],
        lease: timedelta,
        status: AgentStatus,
    ) -> Agent:
        """Register (or register again) an agent; the answer carries its new lease_id."""
        if status is AgentStatus.UNAVAILABLE:
            raise FailedPrecondition("an agent registers as STARTING, HEALTHY or DEGRADED")
        registration = Registration(
            namespace=namespace,
            agent_id=agent_id,
            kind=kind,
            name=name,
            version=version,
            capabilities=tuple(dict.fromkeys(capabilities)),
            topics=tuple(dict.fromkeys(topics)),
            metadata=dict(metadata),
            lease=lease,
            status=status,
            lease_id=secrets.token_urlsafe(18),
        )
        if self._gate is not None and (denial := self._gate(registration)) is not None:
            raise PermissionDenied(
                f"the registration of {shown(agent_id)} was refused by policy {denial.policy}, "
                f"rule {denial.rule}: {denial.reason[:500]}"
            )
        agent = await self._store.register_agent(registration)
        self._tell(agent, local=True)
        return agent

    async def heartbeat(
        self, namespace: Namespace, agent_id: str, lease_id: str, *, status: AgentStatus | None, load: float | None
    ) -> HeartbeatOutcome:
        """Renew a lease; FailedPrecondition when it lapsed, is another registration's, or the move is refused."""
        try:
            outcome = await self._store.heartbeat_agent(namespace, agent_id, lease_id, status=status, load=load)
        except HeartbeatRefused as refused:
            raise _refusal(namespace, agent_id, refused, status) from None
        if outcome.changed:
            agent = await self._store.get_agent(namespace, agent_id)
            if agent is not None:
                self._tell(agent, local=True)
        return outcome

    async def deregister(self, namespace: Namespace, agent_id: str, lease_id: str | None, *, reason: str) -> Agent:
        """The agent is UNAVAILABLE from now; idempotent."""
        try:
            agent, changed = await self._store.deregister_agent(
                namespace, agent_id, lease_id, reason=reason or "deregistered"
            )
        except HeartbeatRefused as refused:
            raise _refusal(namespace, agent_id, refused, None) from None
        if changed:
            self._tell(agent, local=True)
        for listener in self._deregistered:
            listener(agent)
        return agent

    def note_poll(self, namespace: Namespace, worker_id: str) -> None:
        """A worker polled: its record's last poll is set at the next sweep (one write per sweep)."""
        self._polls[(namespace, worker_id)] = datetime.now(UTC)

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, namespace: Namespace, agent_id: str) -> Agent:
        agent = await self._store.get_agent(namespace, agent_id)
        if agent is None:
            raise NotFound(f"agent {shown(agent_id)} not found")
        return agent

    async def list_agents(
        self,
        namespace: Namespace,
        *,
        statuses: Sequence[AgentStatus],
        kind: str,
        capability: str,
        limit: int,
        page_token: str,
    ) -> tuple[list[Agent], str]:
        """A page of agents by agent_id, and the next page's token ("" after the last)."""
        after = decode_id_page_token(page_token) if page_token else ""
        agents = await self._store.list_agents(
            namespace, statuses=statuses, kind=kind, capability=capability, after=after, limit=limit + 1
        )
        if len(agents) <= limit:
            return agents, ""
        return agents[:limit], encode_id_page_token(agents[limit - 1].agent_id)

    async def discover(
        self,
        namespace: Namespace,
        capability: str,
        *,
        statuses: Sequence[AgentStatus],
        version: SpecifierSet | None,
        kind: str,
        limit: int,
    ) -> list[Agent]:
        """The agents with a capability, healthiest and least loaded first (ties at random)."""
        return await self._store.discover_agents(
            namespace,
            capability=capability,
            statuses=statuses or [AgentStatus.HEALTHY],
            kind=kind,
            limit=limit,
            version_ok=None if version is None else functools.partial(_satisfies, version),
        )

    async def watch(self, namespace: Namespace, *, skip_current: bool) -> AsyncGenerator[WatchEvent, None]:
        """The namespace's agents (unless skipped), a "synced" mark, then every change as it happens.

        Ends with ResourceExhausted when the watcher falls WATCH_BACKLOG changes behind.
        """
        watcher = _Watcher()
        self._watchers[namespace].add(watcher)  # before the snapshot: no change falls between
        try:
            if not skip_current:
                after = ""
                while True:
                    page = await self._store.list_agents(
                        namespace, statuses=(), kind="", capability="", after=after, limit=500
                    )
                    for agent in page:
                        yield WatchEvent("current", agent)
                    if len(page) < 500:
                        break
                    after = page[-1].agent_id
            yield WatchEvent("synced")
            while True:
                if watcher.overflowed:
                    raise ResourceExhausted(f"the watch fell over {WATCH_BACKLOG} changes behind; watch again")
                yield WatchEvent("changed", await watcher.queue.get())
        finally:
            watchers = self._watchers[namespace]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[namespace]

    @property
    def watchers(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    # -- background -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep for lapsed leases and hear other replicas' changes, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._store.watch_agents(self._changed_elsewhere, self._resync), name="cmo-agent-push")
            tasks.create_task(self._sweeps(), name="cmo-agent-sweeps")

    async def sweep(self) -> None:
        """Record lapsed leases (telling watchers and listeners) and the polls seen since the last sweep."""
        while lapsed := await self._store.lapse_agents(limit=LAPSE_BATCH):
            for agent in lapsed:
                self._tell(agent, local=True)
            if len(lapsed) < LAPSE_BATCH:
                break
        polls, self._polls = self._polls, {}
        if polls:
            await self._store.note_polls(polls)

    async def recheck(self) -> None:
        """Tell the `on_unavailable` listeners again of the agents that left lately (see RECHECK_WITHIN)."""
        if self._unavailable:
            for agent in await self._store.unavailable_since(within=RECHECK_WITHIN, limit=LAPSE_BATCH):
                self._tell_listeners(agent)

    async def _sweeps(self) -> None:
        loop = asyncio.get_running_loop()
        purged_at = rechecked_at = loop.time()
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
                if loop.time() - rechecked_at >= RECHECK_EVERY:
                    rechecked_at = loop.time()
                    await self.recheck()
                if loop.time() - purged_at >= PURGE_EVERY:
                    purged_at = loop.time()
                    await self._store.purge_agents(unavailable_for=PURGE_AFTER, limit=LAPSE_BATCH)
            except Exception:
                logger.exception("the agent registry's sweep failed; trying again")

    def _tell(self, agent: Agent, *, local: bool) -> None:
        """Tell listeners of a change this replica made, and watchers of any change, once per revision."""
        # Listeners first and whatever the watchers were told: this replica's own change may have
        # reached its watchers already, by its notification, before the change's caller gets here.
        if local:
            self._tell_listeners(agent)
        key = (agent.namespace, agent.agent_id)
        if self._told.get(key, -1) >= agent.revision:
            return
        self._told[key] = agent.revision
        for watcher in self._watchers.get(agent.namespace, ()):
            try:
                watcher.queue.put_nowait(agent)
            except asyncio.QueueFull:
                watcher.overflowed = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    watcher.queue.get_nowait()  # makes room for the wake-up that ends the watch
                watcher.queue.put_nowait(agent)

    def _tell_listeners(self, agent: Agent) -> None:
        if agent.status is not AgentStatus.UNAVAILABLE:
            return
        for listener in self._unavailable:
            try:
                listener(agent)
            except Exception:
                logger.exception("an agent-unavailable listener failed")

    def _changed_elsewhere(self, namespace: Namespace, agent_id: str, revision: int) -> None:
        if namespace not in self._watchers or self._told.get((namespace, agent_id), -1) >= revision:
            return
        asyncio.get_running_loop().create_task(self._read_and_tell(namespace, agent_id))

    async def _read_and_tell(self, namespace: Namespace, agent_id: str) -> None:
        try:
            agent = await self._store.get_agent(namespace, agent_id)
        except Exception:
            logger.exception("could not read a changed agent")
            return
        if agent is not None:
            self._tell(agent, local=False)

    def _resync(self) -> None:
        for namespace in list(self._watchers):
            asyncio.get_running_loop().create_task(self._read_all_and_tell(namespace))

    async def _read_all_and_tell(self, namespace: Namespace) -> None:
        try:
            agents = await self._store.agents_since(namespace, 0)
        except Exception:
            logger.exception("could not read the agents again")
            return
        for agent in agents:
            self._tell(agent, local=False)


def _satisfies(version: SpecifierSet, text: str) -> bool:
    parsed = _parsed(text)
    return parsed is not None and version.contains(parsed, prereleases=True)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Version | None:
    """A version, parsed once: a fleet has few distinct ones, and parsing is most of a filter's cost."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _refusal(
    namespace: Namespace, agent_id: str, refused: HeartbeatRefused, wanted: AgentStatus | None
) -> NotFound | FailedPrecondition:
    shown_id = shown(agent_id)
    if refused.reason == HeartbeatRefused.NOT_FOUND:
        return NotFound(f"agent {shown_id} not found")
    if refused.reason == HeartbeatRefused.STALE:
        return FailedPrecondition(f"agent {shown_id} was registered again since: this lease is not its lease")
    if refused.reason == HeartbeatRefused.LAPSED:
        return FailedPrecondition(f"agent {shown_id} is UNAVAILABLE (its lease lapsed or it left): register again")
    assert refused.status is not None
    assert wanted is not None
    return FailedPrecondition(f"agent {shown_id} is {refused.status.name}: it cannot become {wanted.name}")
