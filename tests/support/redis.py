"""Real Redis for tests: $CMO_TEST_REDIS_URL, or a throwaway `redis-server` on a free port.

The throwaway server keeps nothing on disk (`--save ""`, no AOF) and dies with the test process;
tests isolate themselves by key prefix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.postgres import free_port

__all__ = ["redis_url"]

_START_TIMEOUT = 15.0


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """A Redis URL the tests may use: $CMO_TEST_REDIS_URL or a throwaway server's."""
    if url := os.environ.get("CMO_TEST_REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install it (apt-get install redis-server) or set CMO_TEST_REDIS_URL"
        )
    root = Path(tempfile.mkdtemp(prefix="cmo-redis-"))
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (root / "redis.log").open("wb") as log:
        process = subprocess.Popen([*args, "--dir", str(root)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{(root / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
