"""The example of the SDK's PyPI page, run as a user would: against a real server, in its own process."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, Database, Processes

pytestmark = pytest.mark.e2e


async def test_the_sdk_pages_example_runs(processes: Processes, tmp_path: Path):
    server = await processes.start_server(Database(sqlite_path=tmp_path / "cmo.db"))
    [example] = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "sdk" / "README.md").read_text(), re.DOTALL)
    script = tmp_path / "hello.py"
    script.write_text(example.replace("127.0.0.1:7233", server.address))
    command = [sys.executable, str(script)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{'greeting': 'hello, Ada', 'name': 'Ada'}\n"  # canonical JSON: keys sorted
