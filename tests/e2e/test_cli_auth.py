"""A server with authentication on, as an operator meets it: cmoctl without a token is refused in
one line; with one minted by `cmoctl auth token` from the server's key, it works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.test_cli import run_cmoctl
from tests.support.processes import Database, Processes

pytestmark = pytest.mark.e2e

SECRET = b"an-end-to-end-test-secret-of-32-bytes-or-more"
ISSUER = "https://auth.e2e"


async def test_cmoctl_needs_a_token_and_mints_one_from_the_servers_key(processes: Processes, tmp_path: Path) -> None:
    key = tmp_path / "auth.key"
    key.write_bytes(SECRET)
    env = {
        "CMO_AUTH": "jwt",
        "CMO_AUTH_KEYS_FILE": str(key),
        "CMO_AUTH_KEY_ID": "dev-1",
        "CMO_AUTH_ALGORITHM": "HS256",
        "CMO_AUTH_ISSUER": ISSUER,
    }
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"), env=env)

    refused = await asyncio.to_thread(run_cmoctl, "--address", server.address, "runs", "list")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "Error: UNAUTHENTICATED: missing or invalid credentials"

    minted = await asyncio.to_thread(
        run_cmoctl, "auth", "token", "--key-file", str(key), "--key-id", "dev-1", "--issuer", ISSUER,
        "--scope", "runs:read", "--tenant", "default",
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    listed = await asyncio.to_thread(
        run_cmoctl, "--address", server.address, "--token", token, "runs", "list", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""
    # Its scope is runs:read: the registry is not for it, nor another namespace.
    agents = await asyncio.to_thread(run_cmoctl, "--address", server.address, "--token", token, "agents", "list")
    assert agents.returncode == 1
    assert "PERMISSION_DENIED" in agents.stderr
    other = await asyncio.to_thread(
        run_cmoctl, "--address", server.address, "--token", token, "--tenant", "acme", "runs", "list"
    )
    assert other.returncode == 1
    assert "NOT_FOUND: namespace 'acme/default' not found" in other.stderr
