"""`cmoctl`: look at runs and their steps on a CMO server."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import timedelta
from typing import Any, TypeVar

import click
from rich.console import Console

from cmo._cli_agents import agents
from cmo._cli_auth import auth
from cmo._cli_common import Server, _run, _table
from cmo._cli_policy import policy
from cmo._client import Client, RunHandle
from cmo._history import RunHistory
from cmo._tls import TLSConfig
from cmo._types import RunInfo, RunStatus, WaitInfo
from cmo.durations import parse_duration

__all__ = ["main"]

TERMINAL = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TERMINATED)

T = TypeVar("T")


def _when(run: RunInfo) -> str:
    return run.created_at.strftime("%Y-%m-%d %H:%M:%S")


def _describe_wait(wait: WaitInfo) -> str:
    what = f"signal {wait.name!r}" if wait.kind == "signal" else "a timer"
    until = "" if wait.until is None else f" until {wait.until.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    return f"{what}{until} (step {wait.step_index}, seq {wait.seq})"


def _plain_wait(wait: WaitInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(wait), "until": None if wait.until is None else wait.until.isoformat()}


@click.group()
@click.option(
    "--address",
    default=lambda: os.environ.get("CMO_ADDRESS", "127.0.0.1:7233"),
    show_default="127.0.0.1:7233 or $CMO_ADDRESS",
    help="Server host:port.",
)
@click.option(
    "--tenant",
    default=lambda: os.environ.get("CMO_TENANT", "default"),
    show_default="default or $CMO_TENANT",
    help="The namespace's tenant: runs and graphs of other namespaces are not seen.",
)
@click.option(
    "--project",
    default=lambda: os.environ.get("CMO_PROJECT", "default"),
    show_default="default or $CMO_PROJECT",
    help="The namespace's project.",
)
@click.option(
    "--token",
    default=lambda: os.environ.get("CMO_TOKEN", ""),
    show_default="$CMO_TOKEN",
    help="A bearer token, for a server with authentication on (see `cmoctl auth token`).",
)
@click.option(
    "--tls-ca-file",
    default=lambda: os.environ.get("CMO_TLS_CA_FILE", ""),
    show_default="$CMO_TLS_CA_FILE",
    help="PEM file of the CA that signs the server's certificate; set, the connection is TLS.",
)
@click.option(
    "--tls-cert-file",
    default=lambda: os.environ.get("CMO_TLS_CLIENT_CERT_FILE", ""),
    show_default="$CMO_TLS_CLIENT_CERT_FILE",
    help="PEM file of a client certificate, for a server that requires one (mTLS); with --tls-key-file.",
)
@click.option(
    "--tls-key-file",
    default=lambda: os.environ.get("CMO_TLS_CLIENT_KEY_FILE", ""),
    show_default="$CMO_TLS_CLIENT_KEY_FILE",
    help="PEM file of the client certificate's private key.",
)
@click.option("--tls", "tls_on", is_flag=True, help="TLS with the system's CAs, when no --tls-* file is given.")
@click.pass_context
def main(
    ctx: click.Context,
    address: str,
    tenant: str,
    project: str,
    token: str,
    tls_ca_file: str,
    tls_cert_file: str,
    tls_key_file: str,
    tls_on: bool,
) -> None:
    """Inspect a CMO server's runs."""
    tls = None
    if tls_on or tls_ca_file or tls_cert_file or tls_key_file:
        if bool(tls_cert_file) != bool(tls_key_file):
            raise click.UsageError("--tls-cert-file and --tls-key-file go together: give both or neither")
        tls = TLSConfig(ca_file=tls_ca_file, client_cert_file=tls_cert_file, client_key_file=tls_key_file)
    ctx.obj = Server(address, tenant, project, token, tls)


@main.group()
def runs() -> None:
    """List and show runs."""


@runs.command("list")
@click.option("--graph", "graph_id", default="", help="Only runs of this graph.")
@click.option(
    "--status", type=click.Choice([s.name for s in RunStatus], case_sensitive=False), help="Only this status."
)
@click.option("--limit", default=20, show_default=True, help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def list_runs(server: Server, graph_id: str, status: str | None, limit: int, as_json: bool) -> None:
    """Runs, newest first."""

    async def fetch(client: Client) -> list[RunInfo]:
        wanted = RunStatus[status.upper()] if status else None
        return [r async for r in client.list_runs(graph_id=graph_id, status=wanted, limit=limit)]

    found = _run(server, fetch)
    if as_json:
        for r in found:
            click.echo(
                json.dumps(
                    {
                        "run_id": r.run_id,
                        "graph": f"{r.graph_id}@{r.graph_version}",
                        "status": r.status.name,
                        "steps": r.step_count,
                        "created_at": r.created_at.isoformat(),
                    }
                )
            )
        return
    table = _table("run id", "graph", "status", "steps", "node", "created", keep=("run id",))
    for r in found:
        table.add_row(
            r.run_id,
            f"{r.graph_id}@{r.graph_version}",
            r.status.name if r.waiting is None else f"{r.status.name} ({r.waiting.kind} {r.waiting.name})".strip(),
            str(r.step_count),
            r.current_node or "-",
            _when(r),
        )
    Console().print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="The run and its steps as one JSON document.")
@click.pass_obj
def show_run(server: Server, run_id: str, as_json: bool) -> None:
    """A run and its step table: index, node, attempt, duration, state hash, next."""

    async def fetch(client: Client) -> tuple[RunInfo, list[Any]]:
        return await client.get_run(run_id), await client.get_history(run_id)

    run, steps = _run(server, fetch)
    if as_json:
        doc = {
            "run_id": run.run_id,
            "graph_id": run.graph_id,
            "graph_version": run.graph_version,
            "status": run.status.name,
            "result": run.result,
            "failure": None if run.failure is None else run.failure.message,
            "waiting": None if run.waiting is None else _plain_wait(run.waiting),
            "cancel_requested": run.cancel_requested,
            "steps": [
                {
                    "step_index": s.step_index,
                    "node_id": s.node_id,
                    "attempt": s.attempt,
                    "duration_ms": round(s.duration_ms, 3),
                    "state_hash": s.state_hash,
                    "next_key": s.next_key,
                    "next_node": s.next_node,
                }
                for s in steps
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    console.print(
        f"run [bold]{run.run_id}[/]  graph {run.graph_id}@{run.graph_version}  "
        f"status [bold]{run.status.name}[/]  steps {run.step_count}  created {_when(run)}"
    )
    if run.waiting is not None:
        console.print(f"waiting for {_describe_wait(run.waiting)}")
    if run.cancel_requested and not run.status.terminal:
        console.print("cancel requested: the node stops at its next ctx call")
    if run.failure is not None:
        console.print(
            f"failure at step {run.failure.step_index} ({run.failure.node_id}, attempt "
            f"{run.failure.attempt}): {run.failure.type}: {run.failure.message}"
        )
    table = _table("step", "node", "attempt", "duration ms", "state hash", "next")
    for s in steps:
        table.add_row(
            str(s.step_index),
            s.node_id,
            str(s.attempt),
            f"{s.duration_ms:.1f}",
            s.state_hash[:12],
            "END" if s.next_node == "__end__" else f"{s.next_key} -> {s.next_node}",
        )
    console.print(table)


@runs.command("fork")
@click.argument("run_id")
@click.option("--from-step", type=click.IntRange(min=0), required=True, help="The last step the fork shares.")
@click.option("--state-file", type=click.File("r"), help="JSON state that replaces the state of that step.")
@click.option("--run-id", "new_run_id", help="Id of the new run.")
@click.pass_obj
def fork_run(server: Server, run_id: str, from_step: int, state_file: Any, new_run_id: str | None) -> None:
    """A new run with RUN_ID's steps up to --from-step, going on from there (RUN_ID is not changed)."""
    state = None
    if state_file is not None:
        try:
            state = json.load(state_file)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--state-file") from None
    handle: RunHandle[Any] = _run(
        server, lambda client: client.fork(run_id, from_step=from_step, state=state, new_run_id=new_run_id)
    )
    click.echo(handle.run_id)


@runs.command("terminate")
@click.argument("run_id")
@click.option("--reason", default="terminated by cmoctl", show_default=True, help="Recorded as the failure.")
@click.pass_obj
def terminate_run(server: Server, run_id: str, reason: str) -> None:
    """End a run now: TERMINATED; a worker running its step is refused the checkpoint."""
    run = _run(server, lambda client: client.terminate(run_id, reason=reason))
    click.echo(f"run {run.run_id} {run.status.name}")


@runs.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", default="null", show_default=True, help="The signal's value, as JSON.")
@click.option("--request-id", default="", help="Makes a retry safe: a repeat of this id is ignored.")
@click.pass_obj
def signal_run(server: Server, run_id: str, name: str, payload: str, request_id: str) -> None:
    """Send the signal NAME to a run: it wakes ctx.wait_for_signal(NAME), or waits for it."""
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not JSON: {err}", param_hint="--payload") from None
    delivered = _run(server, lambda client: client.signal(run_id, name, value, request_id=request_id))
    click.echo(f"run {run_id}: signal {name!r} " + ("delivered" if delivered else "kept until the run waits for it"))


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled by cmoctl", show_default=True, help="Recorded as the failure.")
@click.pass_obj
def cancel_run(server: Server, run_id: str, reason: str) -> None:
    """Ask a run to stop: its node sees it at its next ctx call and the run ends CANCELLED."""
    run = _run(server, lambda client: client.cancel(run_id, reason=reason))
    state = run.status.name if run.status.terminal else f"{run.status.name}, cancel requested"
    click.echo(f"run {run.run_id} {state}")


@runs.command("prune")
@click.option("--older-than", required=True, help="How long ago the runs ended, with a unit: 30d, 12h, 90m, 45s …")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.name.lower() for s in TERMINAL], case_sensitive=False),
    help="Only runs that ended so (repeatable); all ended runs by default.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed when stdin is not a terminal).")
@click.pass_obj
def prune_runs(server: Server, older_than: str, statuses: tuple[str, ...], dry_run: bool, yes: bool) -> None:
    """Delete runs that ended more than --older-than ago, then blobs nothing references.

    A run's steps, activity records, signals and artifact records go with it. Runs that have not
    ended are never deleted. It shows first what it would delete, then asks (or, with --yes,
    goes on).
    """
    try:
        age = parse_duration(older_than, unit_required=True)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--older-than") from None
    if age <= timedelta(0):
        raise click.BadParameter("must be more than zero", param_hint="--older-than")
    wanted = [RunStatus[s.upper()] for s in statuses] or list(TERMINAL)
    counts, blobs = _run(server, lambda client: _count_prunable(client, age, wanted))
    total = sum(counts.values())
    if not total and not blobs:
        click.echo("nothing to delete")
        return
    by_status = ", ".join(f"{status.name.lower()} {n}" for status, n in counts.items() if n)
    click.echo(
        f"would delete {total} runs" + (f" ({by_status})" if by_status else "") + f" and {blobs} unreferenced blobs"
    )
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("not deleting without confirmation: stdin is not a terminal; pass --yes")
        if not click.confirm("Delete them?", default=False):
            raise click.ClickException("nothing deleted")
    report = _run(server, lambda client: client.prune_runs(older_than=age, statuses=wanted))
    click.echo(f"deleted {report.runs} runs and {report.blobs} unreferenced blobs")


async def _count_prunable(
    client: Client, age: timedelta, statuses: list[RunStatus]
) -> tuple[dict[RunStatus, int], int]:
    """The runs a prune would delete, by status, and the unreferenced blobs (dry runs, one per status)."""
    reports = [await client.prune_runs(older_than=age, statuses=[s], dry_run=True) for s in statuses]
    return {s: r.runs for s, r in zip(statuses, reports, strict=True)}, reports[-1].blobs


@runs.command("export")
@click.argument("run_id")
@click.pass_obj
def export_run(server: Server, run_id: str) -> None:
    """The run and its steps with their activities as JSON (for replay and golden tests)."""
    history = _run(server, lambda client: client.export_history(run_id))
    click.echo(history.dumps())


@main.command()
@click.argument("run_id", required=False)
@click.option("--trace", "trace_id", help="The run to replay (a run is a trace); same as RUN_ID.")
@click.option(
    "--history",
    "history_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Replay an exported history file instead of asking the server.",
)
@click.option("--to", "to_step", type=click.IntRange(min=0), help="Stop after this step.")
@click.option("--verify", is_flag=True, help="Re-execute the node code (--graph) and compare every step.")
@click.option("--graph", "graph_specs", multiple=True, metavar="MODULE:ATTR", help="Graph code for --verify.")
@click.option("--compare", "other_id", metavar="OTHER_RUN", help="Compare step by step with another run.")
@click.option("--verbose", is_flag=True, help="Show each step's activities and state.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def replay(
    server: Server,
    run_id: str | None,
    trace_id: str | None,
    history_file: str | None,
    to_step: int | None,
    verify: bool,
    graph_specs: tuple[str, ...],
    other_id: str | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Time-travel through a run; with --verify, check its code still produces it (exit 1 if not)."""
    from cmo import _cli_replay as replaying

    target = run_id or trace_id
    if history_file:
        history = RunHistory.load(history_file)
    elif target:
        history = _run(server, lambda client: client.export_history(target))
    else:
        raise click.UsageError("name a run (RUN_ID or --trace) or a --history file")
    console = Console()
    if other_id:
        other = _run(server, lambda client: client.export_history(other_id))
        rows, percent = replaying.compare_table(history, other)
        if as_json:
            click.echo(json.dumps({"match_percent": percent, "steps": rows}, indent=2))
        else:
            table = _table("step", "node", "other node", "state hash", "other hash", "match")
            for r in rows:
                table.add_row(str(r["step_index"]), r["node"] or "-", r["other_node"] or "-",
                              (r["state_hash"] or "-")[:12], (r["other_state_hash"] or "-")[:12],
                              "yes" if r["match"] else "[red]no[/]")  # fmt: skip
            console.print(table)
            console.print(f"match: {percent:.1f}%")
        sys.exit(0 if percent == 100.0 else 1)
    if verify:
        if not graph_specs:
            raise click.UsageError("--verify needs the graph code: --graph module:attr")
        report = replaying.verify(history, replaying.load_graphs(graph_specs), to_step)
        if as_json:
            steps = [dataclasses.asdict(v) | {"ok": v.ok} for v in report.steps]
            click.echo(json.dumps({"run_id": report.run_id, "ok": report.ok, "steps": steps}, indent=2))
        else:
            replaying.print_report(console, report, _table("step", "node", "recorded", "replayed", "verdict"))
        sys.exit(0 if report.ok else 1)
    if as_json:
        doc = history.to_json()
        doc["steps"] = [s for s in doc["steps"] if to_step is None or s["step_index"] <= to_step]
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    table = _table("step", "node", "attempt", "state hash", "activities", "next")
    replaying.print_steps(console, history, to_step, verbose=verbose, table=table)


@main.group()
def a2a() -> None:
    """Agent-to-agent envelopes."""


@a2a.command("validate")
@click.argument("source", type=click.File("rb"), default="-")
def a2a_validate(source: Any) -> None:
    """Check an envelope (a file, or stdin with -) against the spec: exit 1 naming what is wrong."""
    from cmo.a2a import Envelope, EnvelopeError

    try:
        envelope = Envelope.parse(source.read())
    except EnvelopeError as err:
        click.echo(f"invalid: {err.path}: {err.message} ({err.rule})", err=True)
        sys.exit(1)
    meta = envelope.meta
    click.echo(
        f"valid {meta.type} {meta.message_id} from {meta.sender.type}/{meta.sender.id} in {meta.tenant}/{meta.project}"
    )


main.add_command(agents)
main.add_command(auth)
main.add_command(policy)

if __name__ == "__main__":
    sys.exit(main())
