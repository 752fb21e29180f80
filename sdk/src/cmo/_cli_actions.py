"""`cmoctl runs cancel | terminate | signal`: on one run, or on every run a filter picks.

Each run acted on gets a line saying what happened to it (on stderr when nothing could be done,
as for a run that had ended); the exit status is 1 when any run could not be acted on. A filter
(`--status`, `--graph`) shows how many runs it picked and asks before acting (`--yes` does not).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from cmo._cli_common import Server, _run
from cmo._cli_output import stepping
from cmo._cli_render import describe_wait
from cmo._client import Client
from cmo._types import RunInfo, RunStatus
from cmo.errors import CmoError

__all__ = ["cancel_line", "cancel_run", "signal_run", "terminate_line", "terminate_run"]

UNFINISHED = [s for s in RunStatus if not s.terminal]
F = TypeVar("F", bound=Callable[..., Any])
Act = Callable[[Client, RunInfo], Awaitable[tuple[str, bool]]]
"""Acts on one run (as it was just before): the line saying what happened, and whether it did."""


def _at(run: RunInfo) -> str:
    """The step an unfinished run is at: `step 2 (review)`."""
    return f"step {run.step_count}" + (f" ({run.current_node})" if run.current_node else "")


def cancel_line(before: RunInfo, after: RunInfo) -> tuple[str, bool]:
    """What a cancellation did to a run, given the run before and after it; False if it did nothing."""
    run_id = before.run_id
    if before.status.terminal:
        return f"run {run_id} had already ended {before.status.name}: nothing to cancel", False
    if after.status.terminal:
        return f"run {run_id} {after.status.name} at {_at(before)}, before its step started", True
    if before.cancel_requested:
        return f"run {run_id} {after.status.name} at {_at(before)}: already being cancelled", True
    if before.waiting is not None:
        return (
            f"run {run_id} was WAITING for {describe_wait(before.waiting)}: it will be cancelled "
            "(the step wakes with the cancellation and the run ends CANCELLED)"
        ), True
    return (
        f"run {run_id} {after.status.name} at {_at(before)}: it will be cancelled when its node next calls ctx"
    ), True


def terminate_line(before: RunInfo, after: RunInfo) -> tuple[str, bool]:
    """What a termination did to a run, given the run before and after it; False if it did nothing."""
    if before.status.terminal:
        return f"run {before.run_id} had already ended {before.status.name}: nothing to terminate", False
    waiting = "" if before.waiting is None else f", waiting for {describe_wait(before.waiting)}"
    return f"run {after.run_id} {after.status.name} at {_at(before)}{waiting}", True


def _selection(verb: str) -> Callable[[F], F]:
    """The options that pick the runs of a bulk action: --status, --graph, --yes."""

    def add(command: F) -> F:
        command = click.option("--yes", "-y", is_flag=True, help=f"{verb.capitalize()} without asking (needed "
                               "when stdin is not a terminal).")(command)  # fmt: skip
        command = click.option("--graph", "graph_id", default="", help=f"{verb.capitalize()} every unfinished "
                               "run of this graph (with --status: of those statuses).")(command)  # fmt: skip
        return click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice([s.name for s in UNFINISHED], case_sensitive=False),
            help=f"{verb.capitalize()} every run with this status (repeatable).",
        )(command)

    return add


def _pick(server: Server, verb: str, statuses: tuple[str, ...], graph_id: str, yes: bool) -> list[RunInfo]:
    """The runs the filter picks, once the user agreed to act on them (an empty list: none)."""
    wanted = [RunStatus[s.upper()] for s in statuses] or UNFINISHED

    async def find(client: Client) -> list[RunInfo]:
        return [r for status in wanted async for r in client.list_runs(graph_id=graph_id, status=status)]

    found = _run(server, find)
    if not found:
        click.echo("no run matches")
        return []
    by_status = ", ".join(f"{s.name.lower()} {n}" for s, n in sorted(Counter(r.status for r in found).items()))
    of = f" of graph {graph_id}" if graph_id else ""
    click.echo(f"would {verb} {len(found)} runs{of} ({by_status})")
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("not acting without confirmation: stdin is not a terminal; pass --yes")
        if not click.confirm(f"{verb.capitalize()} them?", default=False):
            raise click.ClickException("nothing done")
    return found


def _act(server: Server, runs: list[RunInfo] | str, act: Act, doing: str) -> None:
    """Act on each run (or on the run of this id), saying what happened to each; exit 1 if any was not."""

    async def each(client: Client) -> bool:
        targets = [await client.get_run(runs)] if isinstance(runs, str) else runs
        done = True
        with stepping(len(targets), doing, show=not isinstance(runs, str)) as steps:
            for before in targets:
                try:
                    line, ok = await act(client, before)
                except CmoError as err:
                    line, ok = f"run {before.run_id}: {err}", False
                click.echo(line, err=not ok)
                done = done and ok
                steps.advance()
        return done

    if not _run(server, each):
        sys.exit(1)


def _one_or_picked(
    server: Server, run_id: str | None, verb: str, statuses: tuple[str, ...], graph_id: str, yes: bool
) -> list[RunInfo] | str:
    if run_id and (statuses or graph_id):
        raise click.UsageError("name a RUN_ID or pick runs with --status/--graph, not both")
    if run_id:
        return run_id
    if not (statuses or graph_id):
        raise click.UsageError("name a RUN_ID, or pick runs with --status and/or --graph")
    return _pick(server, verb, statuses, graph_id, yes)


@click.command("cancel")
@click.argument("run_id", required=False)
@click.option("--reason", default="cancelled by cmoctl", show_default=True, help="Recorded as the failure.")
@_selection("cancel")
@click.pass_obj
def cancel_run(
    server: Server, run_id: str | None, reason: str, statuses: tuple[str, ...], graph_id: str, yes: bool
) -> None:
    """Ask a run to stop, or every run --status/--graph pick.

    Its node sees it at its next ctx call (a waiting step wakes with it) and the run ends
    CANCELLED. A run that had ended is left as it is (exit 1).
    """

    async def cancel(client: Client, before: RunInfo) -> tuple[str, bool]:
        if before.status.terminal:
            return cancel_line(before, before)
        return cancel_line(before, await client.cancel(before.run_id, reason=reason))

    if targets := _one_or_picked(server, run_id, "cancel", statuses, graph_id, yes):
        _act(server, targets, cancel, "cancelling")


@click.command("terminate")
@click.argument("run_id", required=False)
@click.option("--reason", default="terminated by cmoctl", show_default=True, help="Recorded as the failure.")
@_selection("terminate")
@click.pass_obj
def terminate_run(
    server: Server, run_id: str | None, reason: str, statuses: tuple[str, ...], graph_id: str, yes: bool
) -> None:
    """End a run now, or every run --status/--graph pick: TERMINATED, no clean-up.

    A worker running its step is refused the checkpoint. A run that had ended is left as it is
    (exit 1).
    """

    async def terminate(client: Client, before: RunInfo) -> tuple[str, bool]:
        if before.status.terminal:
            return terminate_line(before, before)
        return terminate_line(before, await client.terminate(before.run_id, reason=reason))

    if targets := _one_or_picked(server, run_id, "terminate", statuses, graph_id, yes):
        _act(server, targets, terminate, "terminating")


@click.command("signal")
@click.argument("names", nargs=-1, required=True, metavar="[RUN_ID] NAME")
@click.option("--payload", default="null", show_default=True, help="The signal's value, as JSON.")
@click.option("--request-id", default="", help="Makes a retry safe: a repeat of this id is ignored.")
@_selection("signal")
@click.pass_obj
def signal_run(
    server: Server,
    names: tuple[str, ...],
    payload: str,
    request_id: str,
    statuses: tuple[str, ...],
    graph_id: str,
    yes: bool,
) -> None:
    """Send the signal NAME to a run, or to every run --status/--graph pick.

    It wakes the step waiting in ctx.wait_for_signal(NAME), or is kept until the run waits for it.
    """
    picking = bool(statuses or graph_id)
    if len(names) != (1 if picking else 2):
        raise click.UsageError("give RUN_ID NAME, or NAME with --status/--graph")
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not JSON: {err}", param_hint="--payload") from None
    name = names[-1]

    async def send(client: Client, before: RunInfo) -> tuple[str, bool]:
        delivered = await client.signal(before.run_id, name, value, request_id=request_id)
        outcome = "delivered" if delivered else "kept until the run waits for it"
        return f"run {before.run_id}: signal {name!r} {outcome}", True

    if targets := _one_or_picked(server, None if picking else names[0], "signal", statuses, graph_id, yes):
        _act(server, targets, send, f"sending {name!r}")
