"""`make demo-agents` as a newcomer runs it: the example's processes, end to end, on a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


def test_the_agents_demo_heals_one_failure_and_rejects_the_other(redis_server: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_server, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "examples/agents/demo.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "  -> approve: the healer proposes [data-test='buy-now'] for #buy-now (92% sure) (score 92)" in lines
    assert "  -> reject: not a selector failure: left to people (score 0)" in lines
