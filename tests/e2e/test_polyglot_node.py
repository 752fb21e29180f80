"""The Node.js worker of examples/polyglot/node, written from docs/wire.md and the protos alone.

One real server per backend serves the module, with the Node.js worker (two slots, so that a
lapsed lease would be taken by its other slot as attempt 2) and a Python `cmo.Worker` for the
Python side of examples/polyglot/mixed_graph.py. `npm ci` runs once per session if the example's
node_modules is missing; the module is skipped only when `node` itself is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

import cmo
from cmo.serialization import canonical_json, parse_json
from tests.support.processes import REPO_ROOT, Database, Processes, WorkerProcess
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NODE_DIR = REPO_ROOT / "examples" / "polyglot" / "node"
MIXED_GRAPH = REPO_ROOT / "examples" / "polyglot" / "mixed_graph.py"
LEASE_SECONDS = 1.5
HEARTBEATS_PAST_THE_LEASE = 4
"""Heartbeats come every lease/3: four of them span more than a lease."""
RUN_TIMEOUT = 20.0


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with the example's dependencies installed (`npm ci`, once)."""
    executable = shutil.which("node")
    if executable is None:
        pytest.skip("node is not installed: the Node.js worker cannot run")
    if not (NODE_DIR / "node_modules").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install the example's dependencies"
        installed = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
    return executable


@dataclass
class Polyglot:
    """A server with the Node.js worker and the Python worker of the mixed graph."""

    client: cmo.Client
    node_worker: WorkerProcess
    python_worker: WorkerProcess


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def polyglot(
    node: str, module_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Polyglot]:
    processes = Processes(tmp_path_factory.mktemp("processes"))
    try:
        server = await processes.start_server(module_database, lease_seconds=LEASE_SECONDS)
        python_worker, node_worker = await asyncio.gather(
            processes.start_program([sys.executable, str(MIXED_GRAPH), "--address", server.address]),
            processes.start_program(
                [node, str(NODE_DIR / "src" / "main.js"), "--address", server.address, "--concurrency", "2"],
                role="node-worker",
            ),
        )
        async with await cmo.Client.connect(server.address) as client:
            yield Polyglot(client, node_worker, python_worker)
    finally:
        processes.cleanup()
        print(processes.logs())  # shown with a failing test's report


async def _ended(client: cmo.Client, run_id: str) -> cmo.RunInfo:
    run = await client.wait(run_id, timeout=RUN_TIMEOUT)
    assert run.status.terminal, f"run {run_id} is still {run.status.name}"
    return run


async def _completed(client: cmo.Client, graph_id: str, state: dict[str, Any]) -> tuple[str, Any, list[cmo.StepInfo]]:
    """Run a graph to its end: (run_id, its result, its steps); fails unless it COMPLETED."""
    run_id = uuid.uuid4().hex
    await client.start(graph_id, state, run_id=run_id)
    run = await _ended(client, run_id)
    assert run.status is cmo.RunStatus.COMPLETED, run.failure
    return run_id, run.result, await client.get_history(run_id)


def _lines(worker: WorkerProcess, event: str, run_id: str) -> list[str]:
    return [line for line in worker.output().splitlines() if line.startswith(f"{event} run={run_id} ")]


async def _run(argv: list[str], *, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, argv, input=input, capture_output=True, cwd=REPO_ROOT, timeout=30, check=False
    )


def _steps_table(steps: list[cmo.StepInfo]) -> list[tuple[int, str, int, str, str]]:
    return [(s.step_index, s.node_id, s.attempt, s.next_key, s.next_node) for s in steps]


def _assert_hashed_like_the_server(steps: list[cmo.StepInfo]) -> None:
    """Each Node.js step sent the SHA-256 of its state's canonical JSON as its output."""
    for step in steps:
        assert step.output == {"state_hash": step.state_hash}, f"step {step.step_index} hashed another state"


async def test_the_node_workers_own_graph_completes_with_its_state_and_steps(polyglot: Polyglot) -> None:
    run_id, result, steps = await _completed(polyglot.client, "polyglot-js", {"text": "hello wire"})

    assert _steps_table(steps) == [(0, "fetch", 1, "summarise", "summarise"), (1, "summarise", 1, "__end__", "__end__")]
    lookup = {"length": 10, "upper": "HELLO WIRE"}
    assert result == {
        "text": "hello wire",
        "lookup": lookup,
        "fetched_at": steps[0].logical_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "summary": "HELLO WIRE (10 characters)",
        "ratio": 1e-05,
        "labels": {"z": 1, "é": 2, "\uff5a": 3, "\U0001f600": 4},
    }
    (recorded,) = steps[0].activities
    assert (recorded.seq, recorded.kind, recorded.name, recorded.result, recorded.attempt) == (
        0,
        "call",
        "lookup",
        lookup,
        1,
    )
    _assert_hashed_like_the_server(steps)
    assert _lines(polyglot.node_worker, "next task came eagerly", run_id), "summarise was not dispatched eagerly"


async def test_one_node_of_a_python_graph_runs_in_the_node_worker(polyglot: Polyglot) -> None:
    run_id, result, steps = await _completed(
        polyglot.client, "polyglot-mixed", {"text": "The wire is the wire contract"}
    )

    assert _steps_table(steps) == [
        (0, "prepare", 1, "enrich", "enrich"),
        (1, "enrich", 1, "finish", "finish"),
        (2, "finish", 1, "__end__", "__end__"),
    ]
    counts = {"the": 2, "wire": 2, "is": 1, "contract": 1}
    enriched = steps[1]
    assert enriched.state == {**steps[0].state, "counts": counts, "enriched_by": "node"}
    assert [(a.seq, a.kind, a.name, a.result) for a in enriched.activities] == [(0, "call", "count_words", counts)]
    _assert_hashed_like_the_server([enriched])
    assert result["summary"] == "6 words, 4 distinct (counted by node)"
    assert _lines(polyglot.node_worker, "task", run_id) == [f"task run={run_id} step=1 attempt=1 node=enrich"], (
        "the Node.js worker ran other steps than enrich"
    )


async def test_a_cancelled_run_whose_node_heartbeats_ends_cancelled_in_its_first_attempt(polyglot: Polyglot) -> None:
    run_id = uuid.uuid4().hex
    await polyglot.client.start("polyglot-js", {"text": "long", "work_seconds": 60}, run_id=run_id)
    # The node has run longer than a lease: only its heartbeats kept the task from the other slot.
    await assert_eventually(
        lambda: len(_lines(polyglot.node_worker, "heartbeat", run_id)) >= HEARTBEATS_PAST_THE_LEASE,
        timeout=RUN_TIMEOUT,
        what="heartbeats past the lease",
    )
    assert _lines(polyglot.node_worker, "task", run_id) == [f"task run={run_id} step=0 attempt=1 node=fetch"], (
        "the lease lapsed: another attempt took the step"
    )

    await polyglot.client.cancel(run_id, reason="no longer needed")
    run = await _ended(polyglot.client, run_id)

    assert run.status is cmo.RunStatus.CANCELLED
    assert run.failure is not None
    assert (run.failure.type, run.failure.node_id, run.failure.step_index) == ("RunCancelledError", "fetch", 0)
    assert run.failure.attempt == 1, "the lease was lost and the step taken again"
    assert _lines(polyglot.node_worker, "cancel requested", run_id), "the cancellation did not come by heartbeat"
    assert await polyglot.client.get_history(run_id) == []


async def test_a_task_that_arrives_cancelled_is_failed_as_cancelled_without_running(polyglot: Polyglot) -> None:
    run_id = uuid.uuid4().hex
    await polyglot.client.start("polyglot-mixed", {"text": "a b", "linger_seconds": 60}, run_id=run_id)

    async def preparing() -> cmo.RunInfo | None:
        run = await polyglot.client.get_run(run_id)
        return run if run.status is cmo.RunStatus.RUNNING and run.current_node == "prepare" else None

    preparing_run: cmo.RunInfo = await assert_eventually(
        preparing, timeout=RUN_TIMEOUT, what="prepare running in the Python worker"
    )
    assert not preparing_run.cancel_requested
    await polyglot.client.cancel(run_id)
    run = await _ended(polyglot.client, run_id)

    # prepare saw the request and checkpointed; enrich came to Node.js already cancelled.
    assert run.status is cmo.RunStatus.CANCELLED
    assert run.failure is not None
    assert (run.failure.type, run.failure.node_id, run.failure.step_index) == ("RunCancelledError", "enrich", 1)
    assert [s.node_id for s in await polyglot.client.get_history(run_id)] == ["prepare"]
    assert _lines(polyglot.node_worker, "cancelled before start", run_id)


async def test_the_node_workers_canonical_json_is_the_servers(node: str) -> None:
    """Bytes the Node.js worker sends come back from the server's canonicalisation unchanged."""
    documents = [
        {"b": 1, "a": [True, False, None], "": {}},
        {"z": 1, "é": 2, "\uff5a": 3, "\U0001f600": 4, "A": 5, "aa": 6, "a": 7},
        {"n": [0, -0.0, 1.0, 2.5, 1e-4, 1.5e-05, 1.5e-07, -2.5e-9, 5e-324, 123.456, 1e16, 2**53 + 2, 1e21, 1.5e300]},
        {"s": 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f sep \u2028 é 😀 /'},
    ]
    script = (
        "import { readFileSync } from 'node:fs';"
        f"import {{ canonicalJson }} from {json.dumps((NODE_DIR / 'src' / 'canonical.js').as_uri())};"
        "for (const line of readFileSync(0, 'utf8').split('\\n').filter(Boolean))"
        "  process.stdout.write(canonicalJson(JSON.parse(line)) + '\\n');"
    )
    lines = "".join(json.dumps(d) + "\n" for d in documents)
    encoded = await _run(
        [node, "--input-type=module", "-e", script],
        input=lines.encode(),
    )

    assert encoded.returncode == 0, encoded.stderr.decode()
    canonical = encoded.stdout.split(b"\n")[:-1]
    assert len(canonical) == len(documents)
    for sent, document in zip(canonical, documents, strict=True):
        assert canonical_json(parse_json(sent)) == sent
        assert parse_json(sent) == document


async def test_the_examples_node_modules_is_ignored_by_git() -> None:
    if not (REPO_ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout, or no git")
    ignored = await _run(["git", "check-ignore", "-q", str(NODE_DIR / "node_modules")])
    assert ignored.returncode == 0, "node_modules would show as untracked files after `npm ci`"


async def test_the_node_worker_serves_the_namespace_it_is_given(node: str, processes: Processes, database: Database):
    server = await processes.start_server(database)
    await processes.start_program(
        [node, str(NODE_DIR / "src" / "main.js"), "--address", server.address, "--tenant", "acme", "--project", "web"],
        role="node-worker",
    )
    async with await cmo.Client.connect(server.address, tenant="acme", project="web") as client:
        run_id, result, _ = await _completed(client, "polyglot-js", {"text": "ns"})
        assert result["summary"] == "NS (2 characters)"
        run = await client.get_run(run_id)
        assert (run.tenant, run.project) == ("acme", "web")
        elsewhere = client.in_namespace("default", "default")
        with pytest.raises(cmo.errors.RunNotFoundError):
            await elsewhere.get_run(run_id)
        with pytest.raises(cmo.errors.RpcError) as unregistered:
            await elsewhere.start("polyglot-js", {"text": "x"})  # its graph lives in acme/web only
        assert unregistered.value.code == "NOT_FOUND"
