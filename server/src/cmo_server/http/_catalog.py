"""What the server knows besides runs: graph versions, agents, queues and their pollers, namespaces."""

from __future__ import annotations

from typing import Any

from cmo_server.api import check_id, check_range
from cmo_server.auth import Authenticator, Principal
from cmo_server.domain import DEFAULT_NAMESPACE, Namespace
from cmo_server.engine import Engine
from cmo_server.errors import InvalidArgument
from cmo_server.http._calls import Call, optional_int
from cmo_server.http._json import agent_json, graph_json, poller_json
from cmo_server.progress import PollerBook
from cmo_server.registry import AgentStatus, Registry

__all__ = ["CatalogEndpoints"]

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_VERSION = 2**31 - 1


class CatalogEndpoints:
    """Graphs, agents, queues and namespaces."""

    def __init__(
        self,
        engine: Engine,
        *,
        registry: Registry | None,
        pollers: PollerBook | None,
        authenticator: Authenticator | None,
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._pollers = pollers
        self._authenticator = authenticator

    async def session(self, call: Call) -> dict[str, Any]:
        """Whether this server asks for a token, and who the token given names (the login form's check)."""
        principal = call.principal
        return {
            "auth": self._authenticator is not None,
            "subject": None if principal is None else principal.subject,
            "scopes": [] if principal is None else list(principal.scopes),
            "namespaces": [] if principal is None else list(principal.namespaces),
        }

    async def graphs(self, call: Call) -> dict[str, Any]:
        """ListGraphs: the registered graph versions by graph id, then version, each with its runs by status."""
        namespace = call.resolve_namespace()
        graphs, token = await self._engine.list_graphs(
            namespace,
            graph_id=check_id("graph_id", call.query("graph_id"), required=False),
            limit=check_range("page_size", optional_int(call, "page_size", DEFAULT_PAGE), 1, MAX_PAGE),
            page_token=call.query("page_token"),
        )
        counts = await self._engine.count_runs_by_graph(namespace) if graphs else {}
        runs: dict[tuple[str, int], dict[str, int]] = {}
        for (graph_id, version, status), n in sorted(counts.items(), key=lambda item: item[0][2].value):
            runs.setdefault((graph_id, version), {})[status.name] = n
        return {
            "graphs": [
                {
                    **graph_json(g),
                    "runs": {
                        "total": sum(runs.get((g.graph_id, g.version), {}).values()),
                        "by_status": runs.get((g.graph_id, g.version), {}),
                    },
                }
                for g in graphs
            ],
            "next_page_token": token,
        }

    async def graph(self, call: Call) -> dict[str, Any]:
        """GetGraph: one version (0: the newest), with its nodes and edges."""
        raw = call.path("version")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
            raise InvalidArgument("version", f"must be a version number, got {raw[:20]!r}")
        graph = await self._engine.graph(
            call.resolve_namespace(),
            check_id("graph_id", call.path("graph_id")),
            check_range("version", int(raw), 0, MAX_VERSION),
        )
        return graph_json(graph)

    async def agents(self, call: Call) -> dict[str, Any]:
        """ListAgents: the registry's agents by id (filtered by status, kind, capability)."""
        namespace = call.resolve_namespace()
        if self._registry is None:
            return {"agents": [], "next_page_token": ""}
        statuses = []
        if raw := call.query("status"):
            try:
                statuses = [AgentStatus[raw.upper()]]
            except KeyError:
                names = ", ".join(s.name for s in AgentStatus)
                raise InvalidArgument("status", f"{raw[:20]!r} is not an agent status ({names})") from None
        kind = check_id("kind", call.query("kind"), required=False)
        agents, token = await self._registry.list_agents(
            namespace,
            statuses=statuses,
            kind=kind,
            capability=check_id("capability", call.query("capability"), required=False),
            limit=check_range("page_size", optional_int(call, "page_size", DEFAULT_PAGE), 1, MAX_PAGE),
            page_token=call.query("page_token"),
        )
        return {"agents": [agent_json(a) for a in agents], "next_page_token": token}

    async def queues(self, call: Call) -> dict[str, Any]:
        """A namespace's task queues: ready tasks, and the workers polling each (as this server saw them)."""
        namespace = call.resolve_namespace()
        pollers = [] if self._pollers is None else self._pollers.in_namespace(namespace)
        depths = await self._engine.queue_depths(namespace)
        queues = []
        for queue in sorted({*depths, *(p.task_queue for p in pollers)}):
            polling = [p for p in pollers if p.task_queue == queue]
            last = max((p.last_poll for p in polling), default=None)
            queues.append(
                {
                    "task_queue": queue,
                    "ready": depths.get(queue, 0),
                    "pollers": len(polling),
                    "last_poll": None if last is None else last.isoformat(),
                }
            )
        return {"queues": queues, "pollers": [poller_json(p) for p in pollers]}

    async def namespaces(self, call: Call) -> dict[str, Any]:
        """The namespaces the caller may use that this server knows of, and the patterns its token grants."""
        principal = call.principal
        known = {DEFAULT_NAMESPACE, *(self._pollers.namespaces() if self._pollers is not None else ())}
        if principal is not None:
            known |= set(_exact(principal))
            known = {ns for ns in known if principal.may_use(ns)}
        return {
            "namespaces": [{"tenant": ns.tenant, "project": ns.project} for ns in sorted(known)],
            "patterns": None if principal is None else list(principal.namespaces),
        }


def _exact(principal: Principal) -> list[Namespace]:
    """The namespaces a token names without a wildcard."""
    found = []
    for pattern in principal.namespaces:
        tenant, _, project = pattern.partition("/")
        if "*" not in (tenant, project):
            found.append(Namespace(tenant, project))
    return found
