"""A server process with policies, as an operator runs it: a bundle that does not build stops the
start in one line; SIGHUP takes an edited bundle at once and keeps the last good one over a
broken edit, the server serving throughout."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

import pytest

import cmo
from cmo.errors import RpcError
from tests.e2e.test_server_cli import cmo_server
from tests.support.processes import Database, Processes
from tests.support.waiting import assert_eventually

pytestmark = pytest.mark.e2e

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BROKEN = "package cmo.policies.broken\n\ndeny_registration contains x if {\n"


def test_a_policy_that_does_not_build_stops_the_start_in_one_line(tmp_path: Path):
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    (directory / "broken.rego").write_text(BROKEN)
    result = cmo_server("start-dev", "--db", str(tmp_path / "cmo.db"), CMO_POLICY_DIR=str(directory))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Errors:" not in result.stdout + result.stderr  # the interpreter's own dump is kept quiet
    last = result.stderr.strip().splitlines()[-1]
    assert last == "Error: CMO_POLICY_DIR names policies that do not build: broken.rego: this is unclosed", last


async def register_rogue(client: cmo.Client) -> str:
    """Register a specialist offering what the shipped policies do not allow: '' if registered."""
    try:
        await client.registry.register(
            "rogue-1", kind="specialist", name="rogue", version="1.0", capabilities=["exfiltrate.data"]
        )
    except RpcError as err:
        return f"{err.code}: {err.message}"
    return ""


async def test_sighup_reloads_the_policies_and_a_broken_edit_keeps_the_last_good_bundle(
    processes: Processes, tmp_path: Path
):
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    server = await processes.start_server(
        Database(sqlite_path=tmp_path / "cmo.db"), env={"CMO_POLICY_DIR": str(directory)}
    )
    async with await cmo.Client.connect(server.address) as client:
        refused = await register_rogue(client)
        assert refused.startswith("PERMISSION_DENIED: the registration of 'rogue-1' was refused by policy slices")
        # Allow the capability, and say so.
        data = json.loads((directory / "slices.json").read_text())
        data["settings"]["slices"]["specialist_capabilities"].append("exfiltrate.*")
        (directory / "slices.json").write_text(json.dumps(data))
        server.popen.send_signal(signal.SIGHUP)
        await assert_eventually(lambda: "policies reloaded" in server.log(), timeout=10, what="the reload logged")
        assert await register_rogue(client) == ""
        # A broken edit: logged, the bundle in force stays, the server serves on.
        (directory / "broken.rego").write_text(BROKEN)
        server.popen.send_signal(signal.SIGHUP)
        await assert_eventually(
            lambda: "policies not reloaded, the last good bundle" in server.log(), timeout=10, what="the refusal logged"
        )
        await asyncio.sleep(0.2)
        server.raise_if_exited("reloading a broken bundle")
        assert await register_rogue(client) == ""
