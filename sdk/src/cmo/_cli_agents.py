"""`cmoctl agents`: who is in the registry, what each can do, whether it is alive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from cmo._cli_common import Server, _run
from cmo._cli_output import emit, emit_list, output_option, print_table
from cmo._client import Client
from cmo.registry import AgentInfo, AgentStatus

__all__ = ["agents"]

STATUSES = [s.name for s in AgentStatus]
F = TypeVar("F", bound=Callable[..., Any])


def _plain(agent: AgentInfo) -> dict[str, Any]:
    """An agent as JSON."""

    def stamp(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "agent_id": agent.agent_id,
        "tenant": agent.tenant,
        "project": agent.project,
        "kind": agent.kind,
        "name": agent.name,
        "version": agent.version,
        "status": agent.status.name,
        "status_reason": agent.status_reason,
        "load": agent.load,
        "capabilities": list(agent.capabilities),
        "topics": [{"topic": t, "role": r.name} for t, r in agent.topics],
        "metadata": agent.metadata,
        "lease_s": agent.lease.total_seconds(),
        "lease_expires_at": stamp(agent.lease_expires_at),
        "registered_at": stamp(agent.registered_at),
        "last_heartbeat_at": stamp(agent.last_heartbeat_at),
        "last_poll_at": stamp(agent.last_poll_at),
        "revision": agent.revision,
    }


def _ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    return f"{seconds:.0f}s ago" if seconds >= 0 else f"in {-seconds:.0f}s"


def _print(found: list[AgentInfo], output: str) -> None:
    if output != "table":
        emit_list(output, [_plain(agent) for agent in found])
        return
    headers = ("agent id", "kind", "status", "load", "capabilities", "last beat", "last poll", "lease ends")
    rows = [
        [
            a.agent_id,
            a.kind,
            a.status.name if not a.status_reason else f"{a.status.name} ({a.status_reason})",
            f"{a.load:.2f}",
            ", ".join(a.capabilities) or "-",
            _ago(a.last_heartbeat_at),
            _ago(a.last_poll_at),
            _ago(a.lease_expires_at),
        ]
        for a in found
    ]
    print_table(headers, rows)


def _statuses(help: str) -> Callable[[F], F]:
    """The repeatable `--status` option of a listing."""
    return click.option(
        "--status", "statuses", multiple=True, type=click.Choice(STATUSES, case_sensitive=False), help=help
    )


@click.group()
def agents() -> None:
    """The agent registry: workers, specialists and other agents."""


@agents.command("list")
@click.option("--kind", default="", help="Only agents of this kind (worker, specialist, ...).")
@click.option("--capability", default="", help="Only agents with this capability.")
@_statuses("Only agents with this status (repeatable).")
@click.option("--limit", default=100, show_default=True, help="At most this many agents.")
@output_option
@click.pass_obj
def list_agents(server: Server, kind: str, capability: str, statuses: tuple[str, ...], limit: int, output: str) -> None:
    """Agents by id: their status, load, capabilities, last heartbeat and poll, and lease."""

    async def fetch(client: Client) -> list[AgentInfo]:
        wanted = [AgentStatus[s.upper()] for s in statuses]
        found: list[AgentInfo] = []
        async for agent in client.registry.list(statuses=wanted, kind=kind, capability=capability):
            found.append(agent)
            if len(found) >= limit:
                break
        return found

    _print(_run(server, fetch), output)


@agents.command("show")
@click.argument("agent_id")
@output_option
@click.pass_obj
def show_agent(server: Server, agent_id: str, output: str) -> None:
    """One agent, whole: its topics, metadata and lease as well."""
    agent = _run(server, lambda client: client.registry.get(agent_id))
    plain = _plain(agent)
    if output != "table":
        emit(output, plain)
        return
    for key, value in plain.items():
        if key == "topics":
            value = ", ".join(f"{t['topic']} ({t['role'].lower()})" for t in value) or "-"
        elif key == "capabilities":
            value = ", ".join(value) or "-"
        elif key == "metadata":
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        click.echo(f"{key:<18} {value if value not in (None, '') else '-'}")


@agents.command("discover")
@click.argument("capability")
@click.option("--version", "version", default="", help="A version constraint, e.g. '>=1.2,<2'.")
@_statuses("Statuses to take (repeatable); HEALTHY only by default.")
@click.option("--limit", default=10, show_default=True, help="At most this many agents.")
@output_option
@click.pass_obj
def discover_agents(
    server: Server, capability: str, version: str, statuses: tuple[str, ...], limit: int, output: str
) -> None:
    """Agents that can do CAPABILITY, as a graph would find them: healthiest, least loaded first."""
    wanted = [AgentStatus[s.upper()] for s in statuses]
    found = _run(
        server, lambda client: client.registry.discover(capability, statuses=wanted, version=version, limit=limit)
    )
    _print(found, output)


@agents.command("deregister")
@click.argument("agent_id")
@click.option("--reason", default="deregistered by an operator", show_default=True, help="Shown as its status reason.")
@click.pass_obj
def deregister_agent(server: Server, agent_id: str, reason: str) -> None:
    """Make an agent UNAVAILABLE now (it is back when it registers again)."""
    agent = _run(server, lambda client: client.registry.deregister(agent_id, reason=reason))
    click.echo(f"{agent.agent_id}: {agent.status.name} ({agent.status_reason})")
