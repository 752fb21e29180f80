"""The policy gates on a real server, on both backends, with the project's own policies: a denial
before a step, after a step and on a registration, each end to end; the decision log; a broken
bundle refused at start and on reload (the last good one stays)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cmo
from cmo.cli import main
from cmo.errors import RpcError, RunFailedError
from cmo_server.app import CmoServer
from cmo_server.config import AuthConfig, ConfigError, PolicyConfig, ServerConfig
from tests.integration.test_auth import ISSUER, SECRET, token
from tests.integration.test_runs import run_to_failure, serving, unique

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def policy_dir(tmp_path: Path, **default_settings: Any) -> Path:
    """A copy of the project's policies, with some of default.json's settings changed."""
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    data = json.loads((target / "default.json").read_text())
    data["settings"]["default"].update(default_settings)
    (target / "default.json").write_text(json.dumps(data))
    return target


@contextlib.asynccontextmanager
async def gated(
    config: ServerConfig, directory: Path, *, token: str = ""
) -> AsyncIterator[tuple[CmoServer, cmo.Client, Path]]:
    log = directory.parent / "decisions.jsonl"
    policy = PolicyConfig(directory=str(directory), decision_log=str(log))
    async with (
        CmoServer.running(replace(config, policy=policy)) as server,
        await cmo.Client.connect(f"127.0.0.1:{server.port}", token=token or None) as client,
    ):
        yield server, client, log


def stepping(graph_id: str, steps: int, *, error_at: int = -1) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(graph_id)
    calls: list[int] = []
    for i in range(steps):
        last = i == steps - 1

        async def node(state: dict[str, Any], ctx: cmo.NodeContext, i: int = i, last: bool = last) -> Any:
            calls.append(ctx.step_index)
            new = {**state, "n": state.get("n", 0) + 1}
            if i == error_at:
                new["error"] = "the page did not load"
            return cmo.NodeResult(new, next=cmo.END if last else "next")

        graph.node(
            name=f"s{i}",
            entry=i == 0,
            edges={} if last else {"next": f"s{i + 1}"},
            retry=cmo.RetryPolicy(max_attempts=5),
        )(node)
    graph.calls = calls  # type: ignore[attr-defined]
    return graph


def decisions(log: Path) -> list[dict[str, Any]]:
    """The decisions a server logged (read once it stopped: closing its log wrote every line)."""
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_a_step_beyond_the_limit_is_refused_before_it_is_dispatched(server_config: ServerConfig, tmp_path: Path):
    directory = policy_dir(tmp_path, max_steps=2)
    async with gated(server_config, directory) as (server, client, log):
        graph = stepping(unique("long"), 4)
        handle, failure = await run_to_failure(client, graph)
        assert (failure.type, failure.step_index, failure.attempt, failure.node_id) == ("PolicyDenied", 2, 1, "s2")
        assert (
            failure.message == "denied by policy default, rule max_steps: step 2 is beyond the 2 steps a run may take"
        )
        details = json.loads(failure.details)
        assert (details["gate"], details["policy"], details["rule"]) == ("step_before", "default", "max_steps")
        assert graph.calls == [0, 1]  # type: ignore[attr-defined]  # step 2 never reached the worker, nor retried
        assert [s.step_index for s in await handle.history()] == [0, 1]
        assert (await handle.describe()).status is cmo.RunStatus.FAILED
        shown = await asyncio.to_thread(
            CliRunner().invoke, main, ["--address", f"127.0.0.1:{server.port}", "runs", "show", handle.run_id]
        )
        assert shown.exit_code == 0, shown.output
        assert (
            "failure at step 2 (s2, attempt 1): PolicyDenied: denied by policy default, rule max_steps: "
            "step 2 is beyond the 2 steps a run may take" in " ".join(shown.output.split())
        )
    logged = [d for d in decisions(log) if d.get("run_id") == handle.run_id]
    gates = [(d["gate"], d["step_index"], d["allowed"]) for d in logged]
    assert ("step_before", 2, False) in gates
    assert ("step_after", 1, True) in gates
    denied = next(d for d in logged if not d["allowed"])
    assert denied["denials"] == [
        {"policy": "default", "rule": "max_steps", "reason": "step 2 is beyond the 2 steps a run may take"}
    ]
    assert denied["bundle"] == details["bundle"]
    assert len(denied["bundle"]) == 64


async def test_a_blocked_graph_fails_at_its_first_step(server_config: ServerConfig, tmp_path: Path):
    graph_id = unique("blocked")
    async with gated(server_config, policy_dir(tmp_path, blocked_graphs=[graph_id])) as (_, client, _log):
        graph = stepping(graph_id, 2)
        _, failure = await run_to_failure(client, graph)
        assert failure.message == f"denied by policy default, rule blocked_graph: graph {graph_id} is blocked"
        assert graph.calls == []  # type: ignore[attr-defined]
        # Another graph still runs.
        other = stepping(unique("allowed"), 2)
        async with serving(client, [other]):
            assert (await (await client.start(other, {})).result(timeout=20)) == {"n": 2}


async def test_a_step_reporting_an_error_is_refused_after_it_ran_and_not_checkpointed(
    server_config: ServerConfig, tmp_path: Path
):
    async with gated(server_config, policy_dir(tmp_path)) as (_, client, _log):
        graph = stepping(unique("erring"), 3, error_at=1)
        handle, failure = await run_to_failure(client, graph)
        assert (failure.type, failure.step_index, failure.attempt) == ("PolicyDenied", 1, 1)
        assert failure.message == (
            "denied by policy default, rule step_error: the step reported an error: the page did not load"
        )
        assert json.loads(failure.details)["gate"] == "step_after"
        assert graph.calls == [0, 1]  # type: ignore[attr-defined]  # not retried, though its policy allows 5
        assert [s.step_index for s in await handle.history()] == [0]  # step 1's result was not kept


async def test_a_specialist_registration_the_policies_refuse_is_permission_denied_and_not_written(
    server_config: ServerConfig, tmp_path: Path
):
    async with gated(server_config, policy_dir(tmp_path)) as (_, client, log):
        with pytest.raises(RpcError) as refused:
            await client.registry.register(
                "rogue-1", kind="specialist", name="rogue", version="latest", capabilities=["exfiltrate.data"]
            )
        assert refused.value.code == "PERMISSION_DENIED"
        assert "refused by policy slices, rule specialist_capabilities" in refused.value.message
        with pytest.raises(RpcError, match="NOT_FOUND"):
            await client.registry.get("rogue-1")
        registered = await client.registry.register(
            "healer-1", kind="specialist", name="healer", version="1.2.0", capabilities=["healing.selector"]
        )
        assert registered.agent.agent_id == "healer-1"
        # A worker is not a specialist: the specialist rules leave it alone.
        await client.registry.register("w-1", kind="worker", capabilities=["queue:default"])
    registrations = [d for d in decisions(log) if d["gate"] == "registration"]
    assert [(d["agent_id"], d["allowed"]) for d in registrations] == [
        ("rogue-1", False),
        ("healer-1", True),
        ("w-1", True),
    ]
    assert {d["rule"] for d in registrations[0]["denials"]} == {"specialist_capabilities", "specialist_version"}


async def test_a_bundle_that_does_not_build_stops_the_start(server_config: ServerConfig, tmp_path: Path):
    directory = policy_dir(tmp_path)
    (directory / "broken.rego").write_text("package cmo.policies.broken\n\ndeny_step_before contains x if { x := }\n")
    with pytest.raises(ConfigError) as refused:
        async with gated(server_config, directory):
            pass
    assert refused.value.variable == "CMO_POLICY_DIR"
    assert "broken.rego" in str(refused.value)


async def test_a_reload_takes_a_good_bundle_and_keeps_the_last_good_one_over_a_broken_one(
    server_config: ServerConfig, tmp_path: Path
):
    directory = policy_dir(tmp_path, max_steps=1)
    async with gated(server_config, directory) as (server, client, _log):
        reloader = server.policies
        assert reloader is not None
        first = reloader.bundle.hash
        # Broken: refused, the bundle in force stays and still denies.
        (directory / "broken.rego").write_text("package cmo.policies.broken\n\ndeny_step_before contains x if {\n")
        assert await reloader.reload() is False
        assert reloader.bundle.hash == first
        graph = stepping(unique("reloaded"), 2)
        async with serving(client, [graph]):
            with pytest.raises(RunFailedError, match="max_steps"):
                await (await client.start(graph, {})).result(timeout=20)
        # Fixed, with a higher limit: in force at once.
        (directory / "broken.rego").unlink()
        data = json.loads((directory / "default.json").read_text())
        data["settings"]["default"]["max_steps"] = 100
        (directory / "default.json").write_text(json.dumps(data))
        assert await reloader.reload() is True
        assert reloader.bundle.hash != first
        async with serving(client, [graph]):
            assert await (await client.start(graph, {}, run_id=uuid.uuid4().hex)).result(timeout=20) == {"n": 2}


async def test_the_callers_roles_reach_the_gates(server_config: ServerConfig, tmp_path: Path):
    (tmp_path / "auth.key").write_bytes(SECRET)
    auth = AuthConfig(mode="jwt", keys_file=str(tmp_path / "auth.key"), key_id="k1", algorithm="HS256", issuer=ISSUER)
    secured = replace(server_config, auth=auth)
    directory = policy_dir(tmp_path)
    graph = stepping(unique("personal"), 1)
    # A worker without the admin role may not take a step whose state holds personal data.
    async with gated(secured, directory, token=token(tenant="default")) as (_, client, log):
        _, failure = await run_to_failure_with(client, graph, {"pii": {"email": "a@example.com"}})
        assert failure.message == (
            "denied by policy slices, rule pii_admin_only: slice pii holds personal data: readable by admin only"
        )
    assert any(d["subject"] == "tester" and not d["allowed"] for d in decisions(log))
    admin = token(tenant="default", roles=["admin"])
    async with gated(secured, directory, token=admin) as (_, client, _log), serving(client, [graph]):
        handle = await client.start(graph, {"pii": {"email": "a@example.com"}})
        assert (await handle.result(timeout=20))["n"] == 1


async def run_to_failure_with(
    client: cmo.Client, graph: cmo.Graph[Any], state: dict[str, Any]
) -> tuple[cmo.RunHandle[Any], cmo.FailureInfo]:
    async with serving(client, [graph]):
        handle = await client.start(graph, state)
        with pytest.raises(RunFailedError) as caught:
            await handle.result(timeout=20)
    assert caught.value.failure is not None
    return handle, caught.value.failure
