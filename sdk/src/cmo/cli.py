"""`cmoctl`: look at runs and their steps on a CMO server, and act on them."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

import click

from cmo import _cli_render as render
from cmo._cli_actions import cancel_run, signal_run, terminate_run
from cmo._cli_agents import agents
from cmo._cli_auth import auth
from cmo._cli_common import Server, _run
from cmo._cli_output import console, emit, emit_list, output_option, print_table, working
from cmo._cli_policy import policy
from cmo._client import Client, RunHandle
from cmo._history import RunHistory
from cmo._tls import TLSConfig
from cmo._types import RunInfo, RunStatus, StepInfo
from cmo._version import __version__
from cmo.durations import parse_duration

__all__ = ["main"]

TERMINAL = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TERMINATED)


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
@click.version_option(__version__, "--version", prog_name="cmoctl", message="%(prog)s %(version)s")
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
    """List, show and act on runs."""


@runs.command("list")
@click.option("--graph", "graph_id", default="", help="Only runs of this graph.")
@click.option(
    "--status", type=click.Choice([s.name for s in RunStatus], case_sensitive=False), help="Only this status."
)
@click.option("--id-prefix", default="", help="Only runs whose id starts with this (then in id order).")
@click.option("--limit", default=20, show_default=True, help="At most this many runs.")
@output_option
@click.pass_obj
def list_runs(server: Server, graph_id: str, status: str | None, id_prefix: str, limit: int, output: str) -> None:
    """Runs, newest first, with what each unfinished one waits for (JSON: one run a line)."""

    async def fetch(client: Client) -> list[RunInfo]:
        wanted = RunStatus[status.upper()] if status else None
        found = client.list_runs(graph_id=graph_id, status=wanted, limit=limit, id_prefix=id_prefix)
        return [r async for r in found]

    found = _run(server, fetch)
    if output != "table":
        emit_list(output, [render.run_summary(r) for r in found])
        return
    out = console()
    wide = not out.is_terminal or out.width >= render.WIDE
    print_table(render.RUN_COLUMNS, [render.run_row(r, wide=wide) for r in found], keep=("run id",), out=out)


@runs.command("show")
@click.argument("run_id")
@output_option
@click.pass_obj
def show_run(server: Server, run_id: str, output: str) -> None:
    """A run, what it waits for, and its step table: index, node, attempt, duration, state hash, next."""

    async def fetch(client: Client) -> tuple[RunInfo, list[StepInfo]]:
        return await client.get_run(run_id), await client.get_history(run_id)

    run, steps = _run(server, fetch)
    if output != "table":
        emit(output, render.run_document(run, steps))
        return
    out = console()
    for line in render.run_lines(run):
        out.print(line)
    print_table(render.STEP_COLUMNS, [render.step_row(s) for s in steps], out=out)


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
    with working(f"counting the runs that ended more than {older_than} ago"):
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
    with working(f"deleting {total} runs and {blobs} blobs"):
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
    with working(f"exporting run {run_id}"):
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
@output_option
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
    output: str,
) -> None:
    """Time-travel through a run; with --verify, check its code still produces it (exit 1 if not)."""
    from cmo import _cli_replay as replaying

    target = run_id or trace_id
    if history_file:
        history = RunHistory.load(history_file)
    elif target:
        with working(f"exporting run {target}"):
            history = _run(server, lambda client: client.export_history(target))
    else:
        raise click.UsageError("name a run (RUN_ID or --trace) or a --history file")
    doing = "compared" if other_id else "verified" if verify else "shown"
    last = history.steps[-1].step_index if history.steps else -1
    if to_step is not None and to_step > last:
        _note(f"--to {to_step} is past the run's last step ({last}): all {len(history.steps)} steps are {doing}")
    if other_id:
        if verify or graph_specs:
            _note("--verify does not apply with --compare: the two runs' recorded steps were compared, no code ran")
        with working(f"exporting run {other_id}"):
            other = _run(server, lambda client: client.export_history(other_id))
        sys.exit(0 if replaying.compare(history, other, to_step, output) == 100.0 else 1)
    if verify:
        if not graph_specs:
            raise click.UsageError("--verify needs the graph code: --graph module:attr")
        report = replaying.verify(history, replaying.load_graphs(graph_specs), to_step)
        replaying.print_report(report, history, output)
        sys.exit(0 if report.ok else 1)
    replaying.print_steps(history, to_step, verbose=verbose, output=output)


def _note(text: str) -> None:
    """What an option did that its user may not expect, on stderr (stdout stays the data)."""
    click.echo(f"note: {text}", err=True)


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


runs.add_command(cancel_run)
runs.add_command(signal_run)
runs.add_command(terminate_run)
main.add_command(agents)
main.add_command(auth)
main.add_command(policy)

if __name__ == "__main__":
    sys.exit(main())
