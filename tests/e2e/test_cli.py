"""The command-line tools as a user runs them: cmo-server migrate, cmoctl runs list / show."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import pty
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

import cmo
from tests.e2e.graphs import APPROVAL, COUNTER, Markers, counter_graph, counter_input
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e


def run_cmoctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """cmoctl as a script runs it: stdin is not a terminal."""
    command = [sys.executable, "-m", "cmo.cli", *args]
    return subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=_env(), cwd=cwd
    )


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def cmoctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cmoctl("--address", address, *args)


def cmoctl_at_a_terminal(address: str, *args: str, typed: str) -> subprocess.CompletedProcess[str]:
    """cmoctl as a person runs it: stdin is a terminal, on which `typed` is typed."""
    command = [sys.executable, "-m", "cmo.cli", "--address", address, *args]
    terminal, its_end = pty.openpty()
    try:
        with subprocess.Popen(
            command, stdin=its_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as process:
            os.close(its_end)
            os.write(terminal, typed.encode())  # typed ahead: the terminal keeps it until cmoctl reads
            stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(terminal)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


async def test_cmoctl_lists_runs_and_shows_the_step_table(processes: Processes, markers: Markers, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(COUNTER, counter_input(3), run_id=run_id)
        await client.wait(run_id, timeout=30)
        steps = await client.get_history(run_id)

    listed = await asyncio.to_thread(cmoctl, server.address, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["run_id"], r["status"], r["steps"]) for r in rows] == [(run_id, "COMPLETED", 3)]
    found = await asyncio.to_thread(cmoctl, server.address, "runs", "list", "--id-prefix", run_id[:6], "--json")
    assert [json.loads(line)["run_id"] for line in found.stdout.splitlines()] == [run_id]
    other = "z" if run_id[0] != "z" else "y"
    none = await asyncio.to_thread(cmoctl, server.address, "runs", "list", "--id-prefix", other, "--json")
    assert (none.returncode, none.stdout) == (0, "")

    shown = await asyncio.to_thread(cmoctl, server.address, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    for column in ("step", "node", "attempt", "duration ms", "state hash", "next"):
        assert column in shown.stdout
    for step in steps:
        assert step.state_hash[:12] in shown.stdout
    assert "END" in shown.stdout

    as_json = json.loads((await asyncio.to_thread(cmoctl, server.address, "runs", "show", run_id, "--json")).stdout)
    assert [s["state_hash"] for s in as_json["steps"]] == [s.state_hash for s in steps]

    missing = await asyncio.to_thread(cmoctl, server.address, "runs", "show", "no-such-run")
    assert missing.returncode == 1
    assert "no-such-run" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cmo_server_migrate_creates_a_migrated_sqlite_file(tmp_path: Path):
    db = tmp_path / "fresh.db"
    command = [sys.executable, "-m", "cmo_server.cli", "migrate", "--db", str(db)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "is migrated" in result.stdout
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "tasks", "steps", "graphs", "schema_migrations"} <= tables


ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "triage-history.json"
DRIFTED = """
from dataclasses import replace
import cmo
from examples.triage import triage as original

triage = cmo.Graph("triage", version=1, state=original.state_type)
for name, node in original.nodes.items():
    triage.nodes[name] = node
triage.entry = original.entry

async def close(ticket, ctx):
    return cmo.NodeResult(replace(ticket, log=[*ticket.log, "closed twice"]), next=cmo.END)

triage.nodes["close"] = replace(original.nodes["close"], fn=close)
"""


def replay_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`cmoctl replay` offline; the repo root on the path so `--graph examples.…` imports."""
    return run_cmoctl("replay", *args, cwd=cwd)


def test_cmoctl_replay_verify_tells_ci_the_verdict_by_its_exit_status(tmp_path: Path):
    same = replay_cli("--history", str(GOLDEN), "--verify", "--graph", "examples.triage:triage")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "3/3 steps match: deterministic" in same.stdout

    (tmp_path / "drifted.py").write_text(DRIFTED)
    drifted = replay_cli("--history", str(GOLDEN), "--verify", "--graph", "drifted:triage", "--json", cwd=tmp_path)
    assert drifted.returncode == 1, drifted.stderr
    verdict = json.loads(drifted.stdout)
    assert [s["ok"] for s in verdict["steps"]] == [True, True, False]
    assert verdict["steps"][2]["problem"].startswith("state hash")
    assert '+    "closed twice"' in verdict["steps"][2]["state_diff"]
    shown = replay_cli("--history", str(GOLDEN), "--verify", "--graph", "drifted:triage", cwd=tmp_path)
    assert shown.returncode == 1
    diff = shown.stdout.split("state after step 2 (close), recorded and replayed:\n", 1)[1].splitlines()
    assert '+    "closed twice"' in diff
    assert "2/3 steps match: DIVERGES" in diff[-1]

    past = replay_cli("--history", str(GOLDEN), "--verify", "--graph", "examples.triage:triage", "--to", "9")
    assert past.returncode == 0, past.stderr
    assert "3/3 steps match" in past.stdout
    assert "note: --to 9 is past the run's last step (2): all 3 steps are verified" in past.stderr

    upto = replay_cli("--history", str(GOLDEN), "--to", "1", "--verbose")
    assert upto.returncode == 0, upto.stderr
    assert "classify_text" in upto.stdout  # the recorded activity
    assert "state after step 1" in upto.stdout

    unusable = replay_cli("--history", str(GOLDEN), "--verify")
    assert unusable.returncode == 2
    assert "--graph" in unusable.stderr


async def test_cmoctl_replay_compare_gives_the_match_percentage(processes: Processes, markers: Markers, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    twins, other = [uuid.uuid4().hex, uuid.uuid4().hex], uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        for run_id, steps in ((twins[0], 3), (twins[1], 3), (other, 2)):
            await client.start(COUNTER, counter_input(steps), run_id=run_id)
            await client.wait(run_id, timeout=30)

    same = await asyncio.to_thread(cmoctl, server.address, "replay", twins[0], "--compare", twins[1])
    assert same.returncode == 0, same.stdout + same.stderr
    assert "match: 100.0%" in same.stdout
    differs = await asyncio.to_thread(cmoctl, server.address, "replay", twins[0], "--compare", other)
    assert differs.returncode == 1, differs.stderr
    assert "match: 0.0%" in differs.stdout  # its input (steps: 2) is in every state, so no state matches

    told = await asyncio.to_thread(
        cmoctl, server.address, "replay", twins[0], "--compare", twins[1], "--verify", "--graph", "x:y", "-o", "yaml"
    )
    assert told.returncode == 0, told.stderr
    assert yaml.safe_load(told.stdout)["match_percent"] == 100.0
    assert "--verify does not apply with --compare" in told.stderr


async def test_cmoctl_runs_fork_with_an_edited_state(processes: Processes, markers: Markers, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    run_id = uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        await client.start(COUNTER, counter_input(3), run_id=run_id)
        parent = await client.wait(run_id, timeout=30)
        edited = {**parent.input, "count": 40, "trail": [0]}
        (tmp_path / "edited.json").write_text(json.dumps(edited))

        forked = await asyncio.to_thread(
            cmoctl, server.address, "runs", "fork", run_id, "--from-step", "0",
            "--state-file", str(tmp_path / "edited.json"),
        )  # fmt: skip
        assert forked.returncode == 0, forked.stderr
        fork_id = forked.stdout.strip()
        fork = await client.wait(fork_id, timeout=30)
        assert (fork.parent_run_id, fork.forked_from_step) == (run_id, 0)
        assert fork.result["count"] == 41  # 40 from the edited step 0, then step 1 (41 >= steps ends it)
        assert await client.get_run(run_id) == parent

    bad = await asyncio.to_thread(cmoctl, server.address, "runs", "fork", run_id, "--from-step", "9")
    assert bad.returncode == 1
    assert "from_step" in bad.stderr


async def test_cmoctl_shows_what_a_run_waits_for_signals_it_and_cancels_another(
    processes: Processes, markers: Markers, tmp_path: Path
):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="approval", marker_dir=markers.root)
    approved, dropped = uuid.uuid4().hex, uuid.uuid4().hex
    async with await cmo.Client.connect(server.address) as client:
        for run_id in (approved, dropped):
            await client.start(APPROVAL, {"signal": True}, run_id=run_id)

        async def waiting(run_id: str) -> bool:
            return (await client.get_run(run_id)).waiting is not None

        for run_id in (approved, dropped):
            await assert_eventually(functools.partial(waiting, run_id), timeout=20, what="the run waiting")

        shown = await asyncio.to_thread(cmoctl, server.address, "runs", "show", approved)
        assert shown.returncode == 0, shown.stderr
        assert "WAITING" in shown.stdout
        assert "waiting for signal 'approve'" in shown.stdout
        shown_json = await asyncio.to_thread(cmoctl, server.address, "runs", "show", approved, "--json")
        as_json = json.loads(shown_json.stdout)
        assert (as_json["waiting"]["kind"], as_json["waiting"]["name"]) == ("signal", "approve")

        bad = await asyncio.to_thread(cmoctl, server.address, "runs", "signal", approved, "approve", "--payload", "{")
        assert bad.returncode == 2
        assert "--payload" in bad.stderr

        sent = await asyncio.to_thread(
            cmoctl, server.address, "runs", "signal", approved, "approve", "--payload", '{"by": "cli"}'
        )
        assert sent.returncode == 0, sent.stderr
        assert "delivered" in sent.stdout
        assert (await client.wait(approved, timeout=30)).result["decision"] == {"by": "cli"}
        resumed = await asyncio.to_thread(cmoctl, server.address, "runs", "show", approved)
        [gate] = [line for line in resumed.stdout.splitlines() if line.split()[:2] == ["0", "gate"]]
        assert "2 (resumed)" in gate  # the attempt after the signal: not a retry
        assert "retr" not in gate

        cancelled = await asyncio.to_thread(cmoctl, server.address, "runs", "cancel", dropped, "--reason", "no longer")
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"run {dropped} was WAITING for signal 'approve'" in cancelled.stdout
        assert "it will be cancelled" in cancelled.stdout
        done = await client.wait(dropped, timeout=30)
        assert done.status is cmo.RunStatus.CANCELLED
        assert done.failure is not None
        assert "no longer" in done.failure.message

        again = await asyncio.to_thread(cmoctl, server.address, "runs", "cancel", dropped)
        assert again.returncode == 1
        assert f"run {dropped} had already ended CANCELLED: nothing to cancel" in again.stderr

        late = await asyncio.to_thread(cmoctl, server.address, "runs", "signal", dropped, "approve")
        assert late.returncode == 1
        assert "has ended" in late.stderr

        ended = uuid.uuid4().hex
        await client.start(APPROVAL, {"signal": True}, run_id=ended)
        await assert_eventually(functools.partial(waiting, ended), timeout=20, what="the run waiting")
        terminated = await asyncio.to_thread(cmoctl, server.address, "runs", "terminate", ended)
        assert terminated.returncode == 0, terminated.stderr
        assert terminated.stdout.startswith(f"run {ended} TERMINATED at step 0 (gate), waiting for signal 'approve'")


async def test_cmoctl_prune_shows_what_it_would_delete_and_deletes_only_when_told(
    processes: Processes, markers: Markers, tmp_path: Path
):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    await processes.start_worker(server.address, graph="counter", marker_dir=markers.root)
    run_ids = [uuid.uuid4().hex for _ in range(2)]
    async with await cmo.Client.connect(server.address) as client:
        for run_id in run_ids:
            await client.start(COUNTER, counter_input(1), run_id=run_id)
            await client.wait(run_id, timeout=30)

    async def kept() -> list[str]:
        listed = await asyncio.to_thread(cmoctl, server.address, "runs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return sorted(json.loads(line)["run_id"] for line in listed.stdout.splitlines())

    def prune(*args: str) -> subprocess.CompletedProcess[str]:
        return cmoctl(server.address, "runs", "prune", *args)

    async def both_older_than_a_second() -> subprocess.CompletedProcess[str] | None:
        dry = await asyncio.to_thread(prune, "--older-than", "1s", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        return dry if "would delete 2 runs (completed 2)" in dry.stdout else None

    await assert_eventually(both_older_than_a_second, timeout=30, what="both runs to have ended a second ago")

    bad = await asyncio.to_thread(prune, "--older-than", "soon")
    assert bad.returncode == 2
    assert "--older-than" in bad.stderr
    bare = await asyncio.to_thread(prune, "--older-than", "30", "--yes")  # 30 what? Not 30 seconds.
    assert bare.returncode == 2
    assert "add a unit" in bare.stderr
    assert "30d" in bare.stderr

    refused = await asyncio.to_thread(prune, "--older-than", "1s")  # a script, without --yes
    assert refused.returncode == 1
    assert "would delete 2 runs (completed 2)" in refused.stdout
    assert "--yes" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert await kept() == sorted(run_ids)

    declined = await asyncio.to_thread(
        cmoctl_at_a_terminal, server.address, "runs", "prune", "--older-than", "1s", typed="n\n"
    )
    assert declined.returncode == 1
    assert "would delete 2 runs (completed 2)" in declined.stdout
    assert "Delete them?" in declined.stdout
    assert "nothing deleted" in declined.stderr
    assert await kept() == sorted(run_ids)  # nor the declined one

    none_failed = await asyncio.to_thread(prune, "--older-than", "1s", "--status", "failed")
    assert none_failed.returncode == 0, none_failed.stderr
    assert "nothing to delete" in none_failed.stdout

    pruned = await asyncio.to_thread(prune, "--older-than", "1s", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 2 runs" in pruned.stdout
    assert await kept() == []


async def test_cmoctl_looks_into_the_namespace_it_is_given(processes: Processes, markers: Markers, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    graph = counter_graph(markers, "nobody")  # no worker: the runs wait in their namespaces' queues
    async with await cmo.Client.connect(server.address, tenant="acme", project="web") as client:
        await client.start(graph, counter_input(1), run_id=mine)  # registers the graph in acme/web
        async with client.in_namespace("other", "web") as other:
            await other.start(graph, counter_input(1), run_id=theirs)

    def listed(*args: str, env: dict[str, str] | None = None) -> list[str]:
        command = [sys.executable, "-m", "cmo.cli", "--address", server.address, *args, "runs", "list", "--json"]
        environ = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["run_id"] for line in done.stdout.splitlines()]

    assert await asyncio.to_thread(listed, "--tenant", "acme", "--project", "web") == [mine]
    assert await asyncio.to_thread(listed, env={"CMO_TENANT": "other", "CMO_PROJECT": "web"}) == [theirs]
    assert await asyncio.to_thread(listed) == []  # default/default has no runs
    shown = await asyncio.to_thread(cmoctl, server.address, "--tenant", "other", "runs", "show", mine)
    assert shown.returncode == 1  # not found in other/default
    bad = await asyncio.to_thread(cmoctl, server.address, "--tenant", "Acme", "runs", "list")
    assert bad.returncode == 1
    assert "namespace.tenant" in bad.stderr


def test_a_wrong_address_fails_fast_and_says_what_to_try():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    baseline = run_cmoctl("--version")  # what starting cmoctl costs here, connecting to nothing
    took = time.monotonic() - started
    assert baseline.returncode == 0

    started = time.monotonic()
    refused = run_cmoctl("--address", nobody, "runs", "list")
    assert time.monotonic() - started < took + 2.5  # not the 5 s it waits for a server that accepts but is slow
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Error: no CMO server at {nobody}: connection refused\n")
    assert "`cmo-server start-dev`" in refused.stderr
    assert "$CMO_ADDRESS" in refused.stderr
    assert "Traceback" not in refused.stderr

    url = run_cmoctl("--address", "http://127.0.0.1:7233", "runs", "list")
    assert url.returncode == 2
    assert "without http://: try '127.0.0.1:7233'" in url.stderr
    assert url.stdout == ""


def test_shell_completion_completes_commands():
    script = Path(sys.executable).with_name("cmoctl")  # completion is keyed to the program's name
    env = {**_env(), "_CMOCTL_COMPLETE": "bash_complete", "COMP_WORDS": "cmoctl runs ca", "COMP_CWORD": "2"}
    completed = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["plain,cancel"]
    source = subprocess.run(
        [str(script)], capture_output=True, text=True, timeout=60, env={**_env(), "_CMOCTL_COMPLETE": "bash_source"}
    )
    assert "complete -o nosort -F _cmoctl_completion cmoctl" in source.stdout
