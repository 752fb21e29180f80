"""Agents in two languages on one run: a Python graph, a Node.js worker running one of its nodes,
and a Node.js specialist found in the registry by capability, which verifies the signed request
and signs its answer by docs/a2a.md alone. And the Node.js envelopes agree with the spec's test
vectors, as the Python ones do."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid

import pytest

import cmo
from cmo.registry import AgentStatus
from tests.e2e.specialist_main import KEY_ID, SECRET
from tests.e2e.test_invoke_specialist_crash import a2a_env
from tests.e2e.test_polyglot_node import MIXED_GRAPH, NODE_DIR, node  # noqa: F401 (the fixture)
from tests.support.processes import REPO_ROOT, Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.e2e]

VECTORS = REPO_ROOT / "docs" / "a2a-test-vectors.json"


def test_the_node_envelopes_agree_with_the_spec_test_vectors(node: str) -> None:  # noqa: F811
    checked = subprocess.run(
        [node, str(NODE_DIR / "src" / "vectors.js"), str(VECTORS)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "ok 3 cases"


@pytest.mark.redis
async def test_a_python_graph_a_node_worker_and_a_node_specialist_complete_one_run(
    node: str,  # noqa: F811
    processes: Processes,
    database: Database,
    redis_server: str,
) -> None:
    keys = f"{KEY_ID}={SECRET.decode()}"
    server = await processes.start_server(database, env=a2a_env(redis_server))
    await asyncio.gather(
        processes.start_program(
            [sys.executable, str(MIXED_GRAPH), "--address", server.address, "--redis", redis_server, "--keys", keys]
        ),
        processes.start_program(
            [node, str(NODE_DIR / "src" / "main.js"), "--address", server.address], role="node-worker"
        ),
    )
    specialist = await processes.start_program(
        [
            node, str(NODE_DIR / "src" / "specialist.js"), "--address", server.address, "--redis", redis_server,
            "--keys", keys, "--instance", "reviewer-js-1",
        ],
        role="node-specialist",
    )  # fmt: skip
    async with await cmo.Client.connect(server.address) as client:
        agent = await client.registry.get("reviewer-js-1")
        assert (agent.kind, agent.status, agent.capabilities) == ("specialist", AgentStatus.HEALTHY, ("text.review",))
        assert agent.metadata["sdk"] == "node"

        run_id = uuid.uuid4().hex
        await client.start("polyglot-agents", {"text": "Durable agents in two languages"}, run_id=run_id)
        run = await client.wait(run_id, timeout=60)
        assert run.status is cmo.RunStatus.COMPLETED, run.failure
        assert run.result["enriched_by"] == "node"
        assert run.result["review_status"] == "succeeded"
        assert run.result["review"] == {"by": "reviewer-js-1", "language": "node", "words": 5, "verdict": "long"}
        steps = await client.get_history(run_id)
        assert [s.node_id for s in steps] == ["prepare", "enrich", "review"]
        discovered = [a.result for a in steps[2].activities if a.kind == "a2a.discover"]
        assert [d["agent_id"] for d in discovered] == ["reviewer-js-1"]

        specialist.popen.send_signal(signal.SIGTERM)

        async def left() -> bool:
            gone = await client.registry.get("reviewer-js-1")
            return gone.status is AgentStatus.UNAVAILABLE and gone.status_reason == "shut down"

        await assert_eventually(left, timeout=10, what="the Node.js specialist deregistered")
